//! "Is this number on WhatsApp?" with a cache and a pace: bulk lookups are a classic ban
//! trigger, so answers are reused for a while and a device asks at most once per interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wagate_core::Phone;
use wagate_core::engine::NumberCheck;
use whatsapp_rust::IsOnWhatsAppResult;

/// Most numbers one call may check (the `EngineSession` contract).
pub(crate) const MAX_PER_CALL: usize = 50;

/// One answer of the usync query, reduced to what wagate keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The phone digits the answer is about.
    pub(crate) digits: Option<String>,
    pub(crate) registered: bool,
    pub(crate) lid: Option<String>,
}

impl From<&IsOnWhatsAppResult> for Answer {
    fn from(r: &IsOnWhatsAppResult) -> Self {
        // The server may answer with the LID as the primary JID and the number in pn_jid.
        let digits = if r.jid.is_pn() {
            Some(r.jid.user.to_string())
        } else {
            r.pn_jid.as_ref().map(|j| j.user.to_string())
        };
        let lid = r
            .lid
            .as_ref()
            .or(r.jid.is_lid().then_some(&r.jid))
            .map(|l| l.to_non_ad().to_string());
        Self {
            digits,
            registered: r.is_registered,
            lid,
        }
    }
}

/// Matches answers back to the numbers asked; a number WhatsApp did not answer for is
/// reported as not on WhatsApp.
pub(crate) fn match_answers(numbers: &[Phone], answers: &[Answer]) -> Vec<NumberCheck> {
    numbers
        .iter()
        .map(|phone| {
            let a = answers
                .iter()
                .find(|a| a.digits.as_deref() == Some(phone.digits()));
            let registered = a.is_some_and(|a| a.registered);
            NumberCheck {
                phone: phone.clone(),
                on_whatsapp: registered,
                jid: registered.then(|| format!("{}@s.whatsapp.net", phone.digits())),
                lid: a.and_then(|a| a.lid.clone()).filter(|_| registered),
            }
        })
        .collect()
}

/// Remembered answers, per device.
#[derive(Debug)]
pub(crate) struct NumberCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, NumberCheck)>>,
}

impl NumberCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, NumberCheck)>> {
        // A poisoned cache is still a valid cache.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, phone: &Phone) -> Option<NumberCheck> {
        let mut map = self.lock();
        match map.get(phone.digits()) {
            Some((at, check)) if at.elapsed() < self.ttl => Some(check.clone()),
            Some(_) => {
                map.remove(phone.digits());
                None
            }
            None => None,
        }
    }

    pub(crate) fn put(&self, checks: &[NumberCheck]) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.lock();
        let now = Instant::now();
        // Bounded: expired entries go first, and a runaway cache is cleared outright
        // rather than growing without limit.
        if map.len() > 100_000 {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if map.len() > 100_000 {
                map.clear();
            }
        }
        for c in checks {
            map.insert(c.phone.digits().to_owned(), (now, c.clone()));
        }
    }
}

/// Spaces queries at least `min` apart.
#[derive(Debug)]
pub(crate) struct Pacer {
    min: Duration,
    next: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    pub(crate) fn new(min: Duration) -> Self {
        Self {
            min,
            next: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits for this caller's turn. Callers queue on the lock, so concurrent checks of
    /// one device go out one interval apart.
    pub(crate) async fn wait(&self) {
        let mut next = self.next.lock().await;
        if let Some(at) = *next {
            tokio::time::sleep_until(at).await;
        }
        *next = Some(tokio::time::Instant::now() + self.min);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(d: &str) -> Phone {
        Phone::parse(d).unwrap()
    }

    #[test]
    fn answers_match_by_number() {
        let answers = vec![
            Answer {
                digits: Some("15550001111".into()),
                registered: true,
                lid: Some("100000000000001@lid".into()),
            },
            Answer {
                digits: Some("15550002222".into()),
                registered: false,
                lid: None,
            },
        ];
        let got = match_answers(
            &[p("15550001111"), p("15550002222"), p("15550003333")],
            &answers,
        );
        assert_eq!(got.len(), 3);
        assert!(got[0].on_whatsapp);
        assert_eq!(got[0].jid.as_deref(), Some("15550001111@s.whatsapp.net"));
        assert_eq!(got[0].lid.as_deref(), Some("100000000000001@lid"));
        assert!(!got[1].on_whatsapp && got[1].jid.is_none());
        assert!(!got[2].on_whatsapp && got[2].lid.is_none());
    }

    #[test]
    fn cache_expires() {
        let c = NumberCache::new(Duration::from_millis(50));
        let check = NumberCheck {
            phone: p("15550001111"),
            on_whatsapp: true,
            jid: None,
            lid: None,
        };
        c.put(std::slice::from_ref(&check));
        assert_eq!(c.get(&check.phone), Some(check.clone()));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get(&check.phone), None);

        let off = NumberCache::new(Duration::ZERO);
        off.put(std::slice::from_ref(&check));
        assert_eq!(off.get(&check.phone), None);
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_calls() {
        let pacer = Pacer::new(Duration::from_secs(3));
        let t0 = tokio::time::Instant::now();
        pacer.wait().await;
        pacer.wait().await;
        pacer.wait().await;
        assert_eq!(t0.elapsed().as_secs(), 6);
    }
}
