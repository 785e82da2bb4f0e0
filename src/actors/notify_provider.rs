//! Where the notifier delivers: a provider trait, the webhook (`NOTIFY_WEBHOOK_URL`, `awc`
//! from the actix family already used for the identity provider) and the simulated SMS
//! provider used when no webhook is set (latency and failure rate from the settings; it keeps
//! nothing). Providers run on the notifier's arbiter, so their futures need not be `Send`.

use crate::config::NotifySettings;
use futures_util::future::LocalBoxFuture;
use rand::Rng;
use serde::Serialize;
use std::rc::Rc;
use std::time::Duration;

/// One message as it leaves: the webhook's JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct Outgoing {
    pub id: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booking_code: Option<String>,
    /// The phone number, opened just before delivery; never logged.
    pub to: String,
    pub text: String,
    pub created_at: String,
}

/// Delivers one message: `Ok` once the provider has taken it (a 2xx).
pub trait NotifyProvider {
    fn deliver(&self, msg: Outgoing) -> LocalBoxFuture<'static, Result<(), String>>;
}

/// Makes the provider the settings name. Called on the notifier's own thread (a provider is
/// not `Send`).
pub type ProviderFactory = Box<dyn FnOnce() -> Rc<dyn NotifyProvider> + Send>;

pub fn provider_from_settings(s: &NotifySettings) -> ProviderFactory {
    let s = s.clone();
    Box::new(move || match &s.webhook_url {
        Some(url) => Rc::new(Webhook::new(url.clone(), s.timeout_ms)) as Rc<dyn NotifyProvider>,
        None => Rc::new(Simulated {
            latency: Duration::from_millis(s.sim_latency_ms),
            failure_rate: s.sim_failure_rate,
        }),
    })
}

/// `POST`s each message as JSON; a 2xx is delivery, anything else (or no answer) a failure.
pub struct Webhook {
    url: String,
    client: awc::Client,
}

impl Webhook {
    pub fn new(url: String, timeout_ms: u64) -> Self {
        let client = awc::Client::builder()
            .timeout(Duration::from_millis(timeout_ms.max(1)))
            .finish();
        Self { url, client }
    }
}

impl NotifyProvider for Webhook {
    fn deliver(&self, msg: Outgoing) -> LocalBoxFuture<'static, Result<(), String>> {
        let request = self.client.post(&self.url);
        Box::pin(async move {
            // The error says what failed, never the body (it holds the phone number).
            let res = request
                .send_json(&msg)
                .await
                .map_err(|e| format!("webhook: {e}"))?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(format!("webhook answered {}", res.status()))
            }
        })
    }
}

/// The simulated SMS provider: waits its latency, fails its share, keeps nothing.
pub struct Simulated {
    pub latency: Duration,
    pub failure_rate: f64,
}

impl NotifyProvider for Simulated {
    fn deliver(&self, _msg: Outgoing) -> LocalBoxFuture<'static, Result<(), String>> {
        let (latency, fails) = (
            self.latency,
            rand::thread_rng().gen_bool(self.failure_rate.clamp(0.0, 1.0)),
        );
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            if fails {
                Err("simulated failure".into())
            } else {
                Ok(())
            }
        })
    }
}
