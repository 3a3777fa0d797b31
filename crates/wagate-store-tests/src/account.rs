//! Accounts and API keys.

use crate::fixture::{SEC, StoreFactory, account, at};
use wagate_core::account::{Account, MAX_ACTIVE_API_KEYS, NewApiKey};
use wagate_core::store::StoreError;
#[allow(unused_imports)]
use wagate_core::store::{
    AccountStore, DeviceStore, EventStore, InboundStore, MediaStore, MessageStore, SendQueue,
};
use wagate_core::{AccountId, ApiKeyId};

pub async fn account_create_get_and_duplicate(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let acc = Account {
        id: AccountId::new(),
        name: "Acme".into(),
        created_at: at(123),
    };
    s.create_account(&acc).await.unwrap();
    assert_eq!(s.get_account(&acc.id).await.unwrap(), acc);
    assert_eq!(
        s.get_account(&AccountId::new()).await,
        Err(StoreError::NotFound)
    );
    let again = Account {
        name: "Other".into(),
        ..acc.clone()
    };
    assert!(matches!(
        s.create_account(&again).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_account(&acc.id).await.unwrap().name, "Acme");

    // Listed oldest first.
    let later = Account {
        id: AccountId::new(),
        name: "Later".into(),
        created_at: at(456),
    };
    s.create_account(&later).await.unwrap();
    assert_eq!(s.list_accounts().await.unwrap(), vec![acc, later]);
}

fn key(account: &AccountId, prefix: &str, hash: u8, secs: i64) -> NewApiKey {
    NewApiKey {
        id: ApiKeyId::new(),
        account_id: account.clone(),
        prefix: prefix.into(),
        hash: [hash; 32],
        created_at: at(secs * SEC),
    }
}

pub async fn api_keys_limit_revoke_and_prefix_lookup(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let b = account(s).await;
    let max = MAX_ACTIVE_API_KEYS;
    assert_eq!(max, 2, "the case assumes two active keys");

    let k1 = s
        .create_api_key(&key(&a, "wak_00000001", 1, 1), max)
        .await
        .unwrap();
    assert_eq!(k1.account_id, a);
    assert_eq!(k1.prefix, "wak_00000001");
    assert_eq!(k1.revoked_at, None);
    let k2 = s
        .create_api_key(&key(&a, "wak_00000002", 2, 2), max)
        .await
        .unwrap();
    // A third active key is refused and nothing is stored.
    let k3 = key(&a, "wak_00000003", 3, 3);
    assert!(matches!(
        s.create_api_key(&k3, max).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        s.find_api_keys_by_prefix("wak_00000003")
            .await
            .unwrap()
            .is_empty()
    );
    // The limit is per account.
    s.create_api_key(&key(&b, "wak_0000000b", 9, 1), max)
        .await
        .unwrap();
    // A key for an account that does not exist is refused.
    assert!(
        s.create_api_key(&key(&AccountId::new(), "wak_0000000x", 9, 1), max)
            .await
            .is_err()
    );

    let listed = s.list_api_keys(&a).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| &k.id).collect::<Vec<_>>(),
        vec![&k1.id, &k2.id],
        "oldest first"
    );

    let creds = s.find_api_keys_by_prefix("wak_00000001").await.unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0].key, k1);
    assert_eq!(creds[0].hash, [1; 32]);

    // Revoking: only the owner can, once.
    assert_eq!(
        s.revoke_api_key(&b, &k1.id, at(10 * SEC)).await,
        Err(StoreError::NotFound)
    );
    s.revoke_api_key(&a, &k1.id, at(10 * SEC)).await.unwrap();
    assert_eq!(
        s.revoke_api_key(&a, &k1.id, at(11 * SEC)).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.revoke_api_key(&a, &ApiKeyId::new(), at(11 * SEC)).await,
        Err(StoreError::NotFound)
    );
    assert!(
        s.find_api_keys_by_prefix("wak_00000001")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.find_api_keys_by_prefix("wak_unknown")
            .await
            .unwrap()
            .is_empty()
    );

    let listed = s.list_api_keys(&a).await.unwrap();
    assert_eq!(listed.len(), 2, "revoked keys stay listed");
    assert_eq!(listed[0].revoked_at, Some(at(10 * SEC)));
    assert_eq!(listed[1].revoked_at, None);

    // With one key revoked there is room again.
    let k3 = s.create_api_key(&k3, max).await.unwrap();
    assert_eq!(s.list_api_keys(&a).await.unwrap().len(), 3);
    assert_eq!(
        s.find_api_keys_by_prefix("wak_00000003").await.unwrap()[0].key,
        k3
    );
    assert_eq!(s.list_api_keys(&b).await.unwrap().len(), 1);
}
