//! The order a trace's spans are shown in: parents before children.

use std::collections::HashMap;

use super::SpanRecord;

/// `spans` with every parent before its children: roots (spans whose
/// parent is not among them) by start time, each followed by its subtree,
/// children by start time. Spans held up by a cycle of parents come last,
/// each cycle entered at the first of its spans met climbing from the
/// earliest span left.
pub fn tree_order(mut spans: Vec<SpanRecord>) -> Vec<SpanRecord> {
    spans.sort_by(|a, b| (a.start_unix_nano, &a.span_id).cmp(&(b.start_unix_nano, &b.span_id)));
    let index: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let parent: Vec<Option<usize>> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = *index.get(s.parent_span_id.as_deref()?)?;
            (p != i).then_some(p)
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    let mut order = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let mut visit = |from: usize, seen: &mut Vec<bool>| {
        let mut stack = vec![from];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            order.push(i);
            stack.extend(children[i].iter().rev().copied().filter(|&c| !seen[c]));
        }
    };
    for root in (0..spans.len()).filter(|&i| parent[i].is_none()) {
        visit(root, &mut seen);
    }
    // What is left hangs off cycles: every span's parent is left too.
    let mut on_path = vec![false; spans.len()];
    for first in 0..spans.len() {
        if seen[first] {
            continue;
        }
        let mut path = vec![first];
        on_path[first] = true;
        let mut at = first;
        let entry = loop {
            match parent[at] {
                Some(p) if on_path[p] => break p,
                Some(p) if !seen[p] => {
                    on_path[p] = true;
                    path.push(p);
                    at = p;
                }
                _ => break at,
            }
        };
        for i in path {
            on_path[i] = false;
        }
        visit(entry, &mut seen);
    }
    let mut slots: Vec<Option<SpanRecord>> = spans.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}
