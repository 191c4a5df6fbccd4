//! `strand-demo emoji`: the emoji service, a fixed catalog served as
//! `emojivoto.v1.EmojiService`.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::api::emoji::{
    Emoji, EmojiService, EmojiServiceServer, FindByShortcodeRequest, FindByShortcodeResponse,
    ListAllEmojiRequest, ListAllEmojiResponse,
};
use crate::{Error, Shutdown};

/// `strand-demo emoji` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct EmojiArgs {
    /// Address to serve gRPC (h2c) on.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
}

/// The emoji every role knows, `(shortcode, unicode)`: 24 of emojivoto's
/// top 100, `:doughnut:` (the one voting fails on) among them.
pub const CATALOG: &[(&str, &str)] = &[
    (":joy:", "😂"),
    (":sunglasses:", "😎"),
    (":doughnut:", "🍩"),
    (":stuck_out_tongue_winking_eye:", "😜"),
    (":money_mouth_face:", "🤑"),
    (":flushed:", "😳"),
    (":nerd_face:", "🤓"),
    (":ghost:", "👻"),
    (":skull_and_crossbones:", "☠️"),
    (":heart_eyes_cat:", "😻"),
    (":see_no_evil:", "🙈"),
    (":rainbow:", "🌈"),
    (":thumbsup:", "👍"),
    (":clap:", "👏"),
    (":dog:", "🐶"),
    (":pizza:", "🍕"),
    (":taco:", "🌮"),
    (":ramen:", "🍜"),
    (":champagne:", "🍾"),
    (":rocket:", "🚀"),
    (":fire:", "🔥"),
    (":tada:", "🎉"),
    (":trophy:", "🏆"),
    (":100:", "💯"),
];

/// [`EmojiService`] over [`CATALOG`].
#[derive(Clone, Debug, Default)]
pub struct Catalog;

/// Serves the emoji service on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    tracing::info!(addr = %listener.local_addr()?, "emoji service listening");
    crate::serve::grpc(listener, shutdown, EmojiServiceServer::new(Catalog)).await
}

fn emoji(&(shortcode, unicode): &(&str, &str)) -> Emoji {
    Emoji {
        unicode: unicode.to_string(),
        shortcode: shortcode.to_string(),
    }
}

// === impl Catalog ===

#[tonic::async_trait]
impl EmojiService for Catalog {
    async fn list_all(
        &self,
        _: Request<ListAllEmojiRequest>,
    ) -> Result<Response<ListAllEmojiResponse>, Status> {
        Ok(Response::new(ListAllEmojiResponse {
            list: CATALOG.iter().map(emoji).collect(),
        }))
    }

    async fn find_by_shortcode(
        &self,
        req: Request<FindByShortcodeRequest>,
    ) -> Result<Response<FindByShortcodeResponse>, Status> {
        let shortcode = req.into_inner().shortcode;
        let found = CATALOG.iter().find(|(s, _)| *s == shortcode).map(emoji);
        Ok(Response::new(FindByShortcodeResponse { emoji: found }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_well_formed() {
        assert_eq!(CATALOG.len(), 24);
        let mut seen = std::collections::HashSet::new();
        for (shortcode, unicode) in CATALOG {
            assert!(shortcode.len() > 2 && shortcode.starts_with(':') && shortcode.ends_with(':'));
            assert!(!unicode.is_empty() && !unicode.is_ascii());
            assert!(seen.insert(shortcode), "{shortcode} twice");
        }
        assert!(seen.contains(&":doughnut:"));
    }

    #[tokio::test]
    async fn finds_by_shortcode() {
        let find = |s: &str| {
            Catalog.find_by_shortcode(Request::new(FindByShortcodeRequest {
                shortcode: s.to_string(),
            }))
        };
        let found = find(":doughnut:").await.unwrap().into_inner().emoji;
        assert_eq!(found.map(|e| e.unicode), Some("🍩".to_string()));
        assert_eq!(find(":nope:").await.unwrap().into_inner().emoji, None);
        let all = Catalog
            .list_all(Request::new(ListAllEmojiRequest {}))
            .await
            .unwrap();
        assert_eq!(all.into_inner().list.len(), CATALOG.len());
    }
}
