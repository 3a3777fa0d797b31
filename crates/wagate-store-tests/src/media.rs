//! Media metadata.

use crate::fixture::{StoreFactory, account, at};
use wagate_core::MediaId;
use wagate_core::media::Media;
use wagate_core::store::StoreError;
#[allow(unused_imports)]
use wagate_core::store::{
    AccountStore, DeviceStore, EventStore, InboundStore, MediaStore, MessageStore, SendQueue,
};

pub async fn media_is_isolated_between_accounts(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let b = account(s).await;
    let media = Media {
        id: MediaId::new(),
        account_id: a.clone(),
        mime_type: "image/png".into(),
        size: 12_345,
        file_name: Some("chart.png".into()),
        sha256: "ab".repeat(32),
        created_at: at(77),
    };
    s.create_media(&media).await.unwrap();
    assert_eq!(s.get_media(&a, &media.id).await.unwrap(), media);
    assert_eq!(s.get_media(&b, &media.id).await, Err(StoreError::NotFound));
    assert_eq!(
        s.get_media(&a, &MediaId::new()).await,
        Err(StoreError::NotFound)
    );
    assert!(matches!(
        s.create_media(&media).await,
        Err(StoreError::Conflict(_))
    ));
    let unnamed = Media {
        id: MediaId::new(),
        account_id: b.clone(),
        file_name: None,
        ..media.clone()
    };
    s.create_media(&unnamed).await.unwrap();
    assert_eq!(s.get_media(&b, &unnamed.id).await.unwrap(), unnamed);
}
