//! Dashboard sessions: found by token hash while alive, and ended by sign-out, by "end
//! all my sessions", by their key's revocation and by time.

use crate::fixture::{HOUR, SEC, StoreFactory, account, at};
use wagate_core::account::{DashboardSession, MAX_ACTIVE_API_KEYS, NewApiKey};
use wagate_core::store::StoreError;
#[allow(unused_imports)]
use wagate_core::store::{AccountStore, DashboardSessionStore};
use wagate_core::{AccountId, ApiKeyId};

async fn active_key(s: &impl AccountStore, account: &AccountId, n: u8) -> ApiKeyId {
    let key = NewApiKey {
        id: ApiKeyId::new(),
        account_id: account.clone(),
        prefix: format!("wak_0000000{n}"),
        hash: [n; 32],
        created_at: at(0),
    };
    s.create_api_key(&key, MAX_ACTIVE_API_KEYS)
        .await
        .unwrap()
        .id
}

fn session(account: &AccountId, key: &ApiKeyId, token: u8, from: i64) -> DashboardSession {
    DashboardSession {
        token_hash: [token; 32],
        account_id: account.clone(),
        api_key_id: key.clone(),
        created_at: at(from),
        expires_at: at(from + 12 * HOUR),
    }
}

pub async fn dashboard_sessions_live_until_ended_or_expired(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let b = account(s).await;
    let ka = active_key(s, &a, 1).await;
    let kb = active_key(s, &b, 2).await;

    let s1 = session(&a, &ka, 1, SEC);
    s.create_dashboard_session(&s1).await.unwrap();
    assert_eq!(
        s.get_dashboard_session(&[1; 32], at(2 * SEC)).await,
        Ok(s1.clone())
    );
    assert_eq!(
        s.get_dashboard_session(&[9; 32], at(2 * SEC)).await,
        Err(StoreError::NotFound),
        "unknown token"
    );
    // Expiry is exclusive: at `expires_at` the session is over.
    assert_eq!(
        s.get_dashboard_session(&[1; 32], s1.expires_at).await,
        Err(StoreError::NotFound)
    );

    // A session names a key of its own account, and only an active one.
    assert_eq!(
        s.create_dashboard_session(&session(&a, &kb, 3, SEC)).await,
        Err(StoreError::NotFound),
        "another account's key"
    );
    assert_eq!(
        s.create_dashboard_session(&session(&a, &ApiKeyId::new(), 3, SEC))
            .await,
        Err(StoreError::NotFound),
        "no such key"
    );

    // Sign-out ends that one session only.
    s.create_dashboard_session(&session(&a, &ka, 2, SEC))
        .await
        .unwrap();
    assert_eq!(s.delete_dashboard_session(&[1; 32]).await, Ok(true));
    assert_eq!(s.delete_dashboard_session(&[1; 32]).await, Ok(false));
    assert_eq!(
        s.get_dashboard_session(&[1; 32], at(2 * SEC)).await,
        Err(StoreError::NotFound)
    );
    assert!(s.get_dashboard_session(&[2; 32], at(2 * SEC)).await.is_ok());

    // Ending all of an account's sessions leaves other accounts' alone.
    s.create_dashboard_session(&session(&b, &kb, 4, SEC))
        .await
        .unwrap();
    s.create_dashboard_session(&session(&a, &ka, 5, SEC))
        .await
        .unwrap();
    assert_eq!(s.delete_account_dashboard_sessions(&a).await, Ok(2));
    for token in [2, 5] {
        assert_eq!(
            s.get_dashboard_session(&[token; 32], at(2 * SEC)).await,
            Err(StoreError::NotFound)
        );
    }
    assert!(s.get_dashboard_session(&[4; 32], at(2 * SEC)).await.is_ok());
    assert_eq!(s.delete_account_dashboard_sessions(&a).await, Ok(0));
}

pub async fn dashboard_sessions_end_with_their_key(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let k1 = active_key(s, &a, 1).await;
    let k2 = active_key(s, &a, 2).await;
    s.create_dashboard_session(&session(&a, &k1, 1, SEC))
        .await
        .unwrap();
    s.create_dashboard_session(&session(&a, &k1, 2, SEC))
        .await
        .unwrap();
    s.create_dashboard_session(&session(&a, &k2, 3, SEC))
        .await
        .unwrap();
    s.revoke_api_key(&a, &k1, at(10 * SEC)).await.unwrap();
    for token in [1, 2] {
        assert_eq!(
            s.get_dashboard_session(&[token; 32], at(11 * SEC)).await,
            Err(StoreError::NotFound),
            "a session of the revoked key"
        );
    }
    assert!(
        s.get_dashboard_session(&[3; 32], at(11 * SEC))
            .await
            .is_ok()
    );
    // The deletion happened with the revocation, not only at lookup: nothing is left to end.
    assert_eq!(s.delete_dashboard_session(&[1; 32]).await, Ok(false));
    // And a revoked key cannot open a new session.
    assert_eq!(
        s.create_dashboard_session(&session(&a, &k1, 4, 12 * SEC))
            .await,
        Err(StoreError::NotFound)
    );
}

pub async fn dashboard_sessions_expired_ones_are_purged(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let k = active_key(s, &a, 1).await;
    s.create_dashboard_session(&session(&a, &k, 1, SEC))
        .await
        .unwrap();
    // A sign-in after the first session expired removes its row.
    s.create_dashboard_session(&session(&a, &k, 2, 13 * HOUR))
        .await
        .unwrap();
    assert_eq!(s.delete_dashboard_session(&[1; 32]).await, Ok(false));
    assert_eq!(s.delete_dashboard_session(&[2; 32]).await, Ok(true));
}
