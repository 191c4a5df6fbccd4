// The strand dashboard: one page, routed by the URL's fragment.
//
//   #/                                     namespaces, and every workload
//   #/namespaces/NS                        a namespace's workloads, pods, Services, edges
//   #/namespaces/NS/deployments/NAME       a workload: its numbers, callers, callees, routes, live requests
//   #/namespaces/NS/pods/NAME              the same for a pod
//   #/tap?resource=deploy/NAME&namespace=NS[&path=..&method=..&start=1]
//
// Every text shown is set with textContent (never parsed as HTML).
'use strict';

const REFRESH_MS = 2000;
const TAP_ROWS = 100;
const WINDOW_SECS = 60;

let config = { source: '', grafanaUrl: null, grafanaDashboards: {} };
// Bumped on every navigation: a refresh loop of an older view stops.
let generation = 0;
// The running live-requests stream, stopped when the view changes.
let tapStop = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

async function getJSON(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== '') q.set(k, v);
  }
  const rsp = await fetch(`${path}?${q}`);
  const body = await rsp.json().catch(() => ({ error: `HTTP ${rsp.status}` }));
  if (!rsp.ok) throw new Error(body.error || `HTTP ${rsp.status}`);
  return body;
}

// === formatting ===

const hasTraffic = (row) => row.requests > 0;
const pct = (x) => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(2)}%`);
const ms = (v) => (v === null || v === undefined ? '-' : v < 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(0)} ms`);
const rate = (row) => (hasTraffic(row) ? `${row.rps.toFixed(1)} rps` : '-');

function successClass(s) {
  if (s === null || s === undefined) return null;
  return s >= 0.95 ? 'good' : s >= 0.9 ? 'warn' : 'bad';
}

// `<sa>.<ns>` of `<sa>.<ns>.serviceaccount.identity...`, as the CLI shortens it.
const shortId = (id) => (id ? id.split('.').slice(0, 2).join('.') : '-');

const KIND_PATH = { deployment: 'deployments', pod: 'pods' };

function href(kind, ns, name) {
  if (kind === 'namespace') return `#/namespaces/${encodeURIComponent(name)}`;
  const path = KIND_PATH[kind];
  return path ? `#/namespaces/${encodeURIComponent(ns)}/${path}/${encodeURIComponent(name)}` : null;
}

function nameCell(row) {
  const to = href(row.kind, row.namespace, row.name);
  return el('td', { class: 'left' }, to ? el('a', { href: to }, row.name) : row.name);
}

// === tables ===

function statTable(rsp, opts) {
  const o = opts || {};
  if (!rsp.rows.length) return el('p', { class: 'empty' }, o.empty || 'No traffic found.');
  const head = ['Name', 'Meshed', 'Success rate', 'RPS', 'P50', 'P95', 'P99', 'TCP', 'mTLS'];
  if (o.namespaces) head.unshift('Namespace');
  const anyStale = rsp.rows.some((r) => r.stale.length);
  if (anyStale) head.push('Status');
  const body = rsp.rows.map((r) => {
    const traffic = hasTraffic(r);
    const cells = [
      nameCell(r),
      el('td', {}, r.meshed ? `${r.meshed[0]}/${r.meshed[1]}` : '-'),
      el('td', { class: successClass(r.success) }, pct(r.success)),
      el('td', {}, rate(r)),
      el('td', {}, traffic ? ms(r.latency_p50_ms) : '-'),
      el('td', {}, traffic ? ms(r.latency_p95_ms) : '-'),
      el('td', {}, traffic ? ms(r.latency_p99_ms) : '-'),
      el('td', {}, r.tcp_conn === null ? '-' : r.tcp_conn.toFixed(0)),
      el('td', {}, r.mtls === null ? '-' : `${(r.mtls * 100).toFixed(0)}%`),
    ];
    if (o.namespaces) {
      cells.unshift(el('td', { class: 'left' }, el('a', { href: href('namespace', '', r.namespace) }, r.namespace)));
    }
    if (anyStale) {
      cells.push(el('td', { class: 'left stale' }, r.stale.length ? `stale: ${r.stale.join(', ')}` : ''));
    }
    return el('tr', { 'data-name': r.name, 'data-kind': r.kind }, cells);
  });
  return el('table', { class: 'stat' },
    el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))),
    el('tbody', {}, body));
}

function edgesTable(rsp) {
  if (!rsp.edges.length) return el('p', { class: 'empty' }, 'No edges found.');
  const secs = Math.max(rsp.window, 1);
  const body = rsp.edges.map((e) => el('tr', { 'data-src': e.src, 'data-dst': e.dst },
    el('td', { class: 'left' }, el('a', { href: href('deployment', e.src_namespace, e.src) }, e.src)),
    el('td', { class: 'left' }, el('a', { href: href('deployment', e.dst_namespace, e.dst) }, e.dst)),
    el('td', { class: 'left', title: e.client_id || '' }, shortId(e.client_id)),
    el('td', { class: 'left', title: e.server_id || '' }, shortId(e.server_id)),
    el('td', { class: e.secured ? 'good' : 'bad', title: e.no_tls_reason || '' },
      e.secured ? '\u2713 mTLS' : `\u2717 ${e.no_tls_reason || 'not secured'}`),
    el('td', {}, `${(e.requests / secs).toFixed(1)} rps`)));
  return el('table', { class: 'edges' },
    el('thead', {}, el('tr', {}, ['Source', 'Destination', 'Client', 'Server', 'Secured', 'RPS']
      .map((h, i) => el('th', { class: i < 5 ? 'left' : null }, h)))),
    el('tbody', {}, body));
}

// The ServiceProfile routes of the calls a workload or pod makes, as
// `strand viz routes` tables them (the proxy records routes on the
// client's side only).
function routesTable(rsp) {
  if (!rsp.routes.length) {
    return el('p', { class: 'empty' }, 'No ServiceProfile routes: see `strand profile --template`.');
  }
  const head = ['Route', 'Service', 'Success rate', 'RPS', 'P50', 'P95', 'P99'];
  const body = rsp.routes.map((r) => {
    const traffic = hasTraffic(r);
    return el('tr', { 'data-route': r.route, 'data-service': r.service },
      el('td', { class: 'left' }, r.route),
      el('td', { class: 'left', title: r.dst }, r.service),
      el('td', { class: successClass(r.success) }, pct(r.success)),
      el('td', {}, rate(r)),
      el('td', {}, traffic ? ms(r.latency_p50_ms) : '-'),
      el('td', {}, traffic ? ms(r.latency_p95_ms) : '-'),
      el('td', {}, traffic ? ms(r.latency_p99_ms) : '-'));
  });
  return el('table', { class: 'routes' },
    el('thead', {}, el('tr', {}, head.map((h, i) => el('th', { class: i < 2 ? 'left' : null }, h)))),
    el('tbody', {}, body));
}

function staleNote(rsp) {
  const stale = Object.entries(rsp.stale || {});
  if (!stale.length) return null;
  return el('div', { class: 'stale' }, stale.map(([pod, why]) =>
    el('div', {}, `metrics of ${pod} are stale (its proxy's last scrape failed: ${why})`)));
}

// A section whose content `load` returns; it is reloaded every REFRESH_MS
// while the view is shown.
function section(title, id, load) {
  const content = el('div', { class: 'content' }, el('p', { class: 'muted' }, 'Loading…'));
  const s = el('section', { id }, el('h2', {}, title), content);
  s.refresh = async () => {
    try {
      const node = await load();
      content.replaceChildren(...[node].flat().filter(Boolean));
    } catch (e) {
      content.replaceChildren(el('p', { class: 'error' }, e.message));
    }
  };
  return s;
}

function statSection(title, id, params, opts) {
  return section(title, id, async () => {
    const rsp = await getJSON('/api/stat', { window: WINDOW_SECS, ...params });
    return [statTable(rsp, opts), staleNote(rsp)];
  });
}

function edgesSection(title, id, params) {
  return section(title, id, async () => {
    const rsp = await getJSON('/api/edges', { window: WINDOW_SECS, ...params });
    return [edgesTable(rsp), staleNote(rsp)];
  });
}

function routesSection(title, id, params) {
  return section(title, id, async () => {
    const rsp = await getJSON('/api/routes', { window: WINDOW_SECS, ...params });
    return [routesTable(rsp), staleNote(rsp)];
  });
}

// Shows `sections` and refreshes them until the next navigation.
function show(title, crumbs, nodes) {
  const gen = generation;
  document.title = `${title} · strand`;
  const nav = document.getElementById('crumbs');
  nav.replaceChildren(...crumbs.flatMap((c, i) => [
    i ? el('span', { class: 'sep' }, '/') : null,
    c.href ? el('a', { href: c.href }, c.text) : el('span', {}, c.text),
  ]).filter(Boolean));
  const main = document.getElementById('main');
  main.replaceChildren(el('h1', {}, title), ...nodes);
  const refreshing = nodes.filter((n) => n.refresh);
  const tick = async () => {
    if (gen !== generation) return;
    await Promise.all(refreshing.map((s) => s.refresh()));
    if (gen === generation) setTimeout(tick, REFRESH_MS);
  };
  tick();
}

// === live requests ===

function tapPanel(initial) {
  const field = (name, placeholder, value) =>
    el('input', { type: 'text', name, placeholder, value: value || '', size: name === 'resource' ? 22 : 14 });
  const resource = field('resource', 'deploy/NAME', initial.resource);
  const namespace = field('namespace', 'namespace', initial.namespace || 'default');
  const path = field('path', 'path prefix', initial.path);
  const method = field('method', 'method', initial.method);
  const button = el('button', { id: 'tap-toggle', type: 'button' }, 'Start');
  const status = el('span', { id: 'tap-status', class: 'muted' }, 'stopped');
  const errors = el('div', { id: 'tap-errors' });
  const tbody = el('tbody');
  const rows = new Map();
  let running = null;
  let count = 0;

  const stop = () => { if (running) running.abort(); };

  function row(ev) {
    const key = `${ev.proxyDirection}|${ev.source}|${ev.destination}|${ev.id}`;
    if (ev.type !== 'requestInit') return rows.get(key);
    const inbound = ev.proxyDirection === 'inbound';
    const cells = {
      peer: el('td', { class: 'left' }),
      tls: el('td', {}),
      status: el('td', {}, '…'),
      grpc: el('td', {}, ''),
      latency: el('td', {}, ''),
      bytes: el('td', {}, ''),
    };
    const tr = el('tr', { class: 'tap-row', 'data-direction': ev.proxyDirection },
      el('td', { class: 'left' }, inbound ? 'inbound' : 'outbound'),
      cells.peer, cells.tls,
      el('td', { class: 'left' }, ev.method),
      el('td', { class: 'path', title: `${ev.authority}${ev.path}` }, `${ev.authority}${ev.path}`),
      cells.status, cells.grpc, cells.latency, cells.bytes);
    tbody.prepend(tr);
    const r = { tr, cells, key };
    peer(r, ev);
    rows.set(key, r);
    while (tbody.children.length > TAP_ROWS) {
      const last = tbody.lastElementChild;
      last.remove();
      for (const [k, v] of rows) if (v.tr === last) rows.delete(k);
    }
    return r;
  }

  // Who is on the other side: the client for inbound requests; for
  // outbound ones the endpoint, known once the balancer picked it (the
  // response's event says).
  function peer(r, ev) {
    const inbound = ev.proxyDirection === 'inbound';
    const meta = (inbound ? ev.sourceMeta : ev.destinationMeta) || {};
    if (!inbound && !meta.tls && r.cells.peer.textContent) return;
    const id = inbound ? meta.client_id : meta.server_id;
    const who = inbound ? `from ${ev.source}` : `to ${meta.pod || ev.destination}`;
    r.cells.peer.textContent = `${who}${id ? ` (${shortId(id)})` : ''}`;
    const tls = meta.tls === 'true';
    r.cells.tls.textContent = tls ? '\u2713' : '\u2717';
    r.cells.tls.className = tls ? 'ok' : 'no';
    r.cells.tls.title = tls ? 'mTLS' : meta.no_tls_reason || 'no TLS';
  }

  function onEvent(ev) {
    if (ev.type === 'error') {
      errors.append(el('div', { class: 'error' }, ev.error));
      return;
    }
    const r = row(ev);
    if (!r) return;
    if (ev.type === 'responseInit') {
      peer(r, ev);
      r.cells.status.textContent = ev.status;
      r.cells.status.className = ev.status >= 500 ? 'bad' : '';
      r.cells.latency.textContent = ms(ev.sinceRequestInitMicros / 1000);
    } else if (ev.type === 'responseEnd') {
      count += 1;
      status.textContent = `${count} requests`;
      if (ev.grpcStatus !== null && ev.grpcStatus !== undefined) {
        r.cells.grpc.textContent = ev.grpcStatus;
        r.cells.grpc.className = ev.grpcStatus === 0 ? '' : 'bad';
      }
      r.cells.latency.textContent = ms(ev.sinceRequestInitMicros / 1000);
      r.cells.bytes.textContent = `${ev.responseBytes} B`;
      r.tr.classList.add('ended');
    }
  }

  async function start() {
    const ctrl = new AbortController();
    running = ctrl;
    tapStop = stop;
    count = 0;
    rows.clear();
    tbody.replaceChildren();
    errors.replaceChildren();
    button.textContent = 'Stop';
    button.className = 'stop';
    status.textContent = 'waiting for requests…';
    const q = new URLSearchParams({ resource: resource.value.trim(), namespace: namespace.value.trim() });
    if (path.value.trim()) q.set('path', path.value.trim());
    if (method.value.trim()) q.set('method', method.value.trim());
    if (initial.max) q.set('max', initial.max);
    try {
      const rsp = await fetch(`/api/tap?${q}`, { signal: ctrl.signal });
      if (!rsp.ok) {
        const body = await rsp.json().catch(() => ({}));
        throw new Error(body.error || `HTTP ${rsp.status}`);
      }
      const reader = rsp.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line) onEvent(JSON.parse(line));
        }
      }
      status.textContent = `ended: ${count} requests`;
    } catch (e) {
      status.textContent = e.name === 'AbortError' ? `stopped: ${count} requests` : 'failed';
      if (e.name !== 'AbortError') errors.append(el('div', { class: 'error' }, e.message));
    } finally {
      running = null;
      button.textContent = 'Start';
      button.className = '';
    }
  }

  button.addEventListener('click', () => (running ? stop() : start()));
  const head = ['Direction', 'Peer', 'mTLS', 'Method', 'Path', 'Status', 'gRPC', 'Latency', 'Bytes'];
  const panel = el('section', { id: 'tap' },
    el('h2', {}, 'Live requests'),
    el('div', { class: 'controls' }, initial.fixed ? null : [resource, namespace], path, method, button, status),
    errors,
    el('table', { class: 'tap' },
      el('thead', {}, el('tr', {}, head.map((h, i) => el('th', { class: i < 2 || i === 3 || i === 4 ? 'left' : null }, h)))),
      tbody));
  if (initial.start) setTimeout(start, 0);
  return panel;
}

// === views ===

function overview() {
  show('Namespaces', [{ text: 'Namespaces' }], [
    statSection('Namespaces', 'namespaces', { resource: 'ns' }),
    statSection('Workloads', 'workloads', { resource: 'deploy' }, { namespaces: true }),
  ]);
}

function namespaceView(ns) {
  show(`Namespace ${ns}`, [{ text: 'Namespaces', href: '#/' }, { text: ns }], [
    statSection('Workloads', 'workloads', { resource: 'deploy', namespace: ns }),
    statSection('Pods', 'pods', { resource: 'po', namespace: ns }),
    statSection('Services (as their clients see them)', 'services', { resource: 'svc', namespace: ns },
      { empty: 'No Service traffic found.' }),
    edgesSection('Edges', 'edges', { resource: 'deploy', namespace: ns }),
  ]);
}

function grafanaLink(kind, ns, name) {
  const uid = config.grafanaDashboards[kind];
  if (!config.grafanaUrl || !uid) return null;
  const q = new URLSearchParams({ 'var-namespace': ns, [`var-${kind}`]: name });
  return el('p', {}, el('a', { href: `${config.grafanaUrl}/d/${uid}/?${q}`, target: '_blank', rel: 'noopener' },
    'Open in Grafana'));
}

function resourceView(kind, ns, name) {
  const short = kind === 'deployment' ? 'deploy' : 'po';
  const ref = `${short}/${name}`;
  const label = kind === 'deployment' ? 'Workload' : 'Pod';
  show(`${label} ${name}`, [
    { text: 'Namespaces', href: '#/' },
    { text: ns, href: href('namespace', '', ns) },
    { text: name },
  ], [
    grafanaLink(kind, ns, name),
    statSection(label, 'summary', { resource: ref, namespace: ns }),
    statSection('Inbound: who calls it', 'inbound', { resource: short, namespace: ns, to: ref },
      { empty: 'No meshed callers in this namespace.' }),
    statSection('Outbound: what it calls', 'outbound', { resource: 'deploy', namespace: ns, from: ref },
      { empty: 'No calls to meshed workloads in this namespace.' }),
    routesSection('Routes: what it calls, by ServiceProfile route', 'routes', { resource: ref, namespace: ns }),
    tapPanel({ resource: ref, namespace: ns, fixed: true }),
  ].filter(Boolean));
}

function tapView(params) {
  show('Tap', [{ text: 'Tap' }], [
    tapPanel({
      resource: params.get('resource') || '',
      namespace: params.get('namespace') || 'default',
      path: params.get('path') || '',
      method: params.get('method') || '',
      max: params.get('max') || '',
      start: params.get('start') === '1',
    }),
  ]);
}

function route() {
  generation += 1;
  if (tapStop) tapStop();
  tapStop = null;
  const [path, query] = (location.hash.replace(/^#/, '') || '/').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return overview();
  if (parts[0] === 'tap') return tapView(new URLSearchParams(query || ''));
  if (parts[0] === 'namespaces' && parts.length === 2) return namespaceView(parts[1]);
  if (parts[0] === 'namespaces' && parts.length === 4 && parts[2] === 'deployments') {
    return resourceView('deployment', parts[1], parts[3]);
  }
  if (parts[0] === 'namespaces' && parts.length === 4 && parts[2] === 'pods') {
    return resourceView('pod', parts[1], parts[3]);
  }
  return show('Not found', [], [el('p', {}, 'No such page. '), el('a', { href: '#/' }, 'Namespaces')]);
}

async function init() {
  try {
    config = await getJSON('/api/config', {});
    document.getElementById('source').textContent = `numbers from ${config.source}`;
  } catch (e) {
    document.getElementById('source').textContent = `cannot read the configuration: ${e.message}`;
  }
  window.addEventListener('hashchange', route);
  route();
}

init();
