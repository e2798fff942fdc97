//! Incidents' photos: `Reporting.UploadPhoto` stores them in the JetStream object store bucket
//! `WHISTLE_PHOTOS`, `CommandCenter.GetPhoto` serves them, and `GetIncident` lists them.
//!
//! This service is the only door to the bucket: people's NATS connections are denied `$O.>` and
//! `$JS.>`, dispatch has no grant on it, so every stored photo passed the checks here — at most
//! [`MAX_PHOTO_BYTES`], a JPEG, PNG or WebP by its bytes — and every photo shown was checked
//! against the incident's authorization and recorded in the access log (`contact_access`, door
//! `GetPhoto`) before it left, like a resident's unmasked contact (contacts.rs).
//!
//! An object is named by the SHA-256 of its uploader and its bytes, so a retried upload stores
//! nothing new, and a report or a resolution sent through this service may name only photos its
//! own sender uploaded (someone who saw another incident's photo ids cannot attach those photos
//! to an incident that others see); it is never overwritten (which would need a purge, which this
//! service may not do) and its bytes are checked against the name when read back. Only
//! dispatch's retention job removes a photo, after its erasure was recorded (`photo_erasures`,
//! docs/privacy.md); from that record on this service answers that it was erased.

use std::collections::HashMap;

use async_nats::jetstream::{
    self,
    object_store::{InfoErrorKind, ObjectMetadata, ObjectStore},
    stream::Stream,
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use uuid::Uuid;
use whistle_domain::photo::{MediaType, PhotoId, MAX_PHOTOS, MAX_PHOTO_BYTES};
use whistle_proto::v1;
use whistle_store::{
    contacts::{self, Access},
    tokens::Role,
};
use whistle_wire::names::{PHOTOS_BUCKET, PHOTOS_STREAM};

use crate::{auth::Principal, contacts::store, Error, Result};

/// The RPC recorded as the door of a photo read.
const GET_PHOTO: &str = "GetPhoto";
/// The object metadata key holding the sniffed media type.
const MEDIA_TYPE: &str = "media_type";
/// The object metadata key holding the person who uploaded it.
const UPLOADER: &str = "uploader";

/// A photo's id: the SHA-256 of its uploader and its bytes.
fn photo_id(uploader: &str, data: &[u8]) -> PhotoId {
    let digest = Sha256::new()
        .chain_update(b"whistle photo\0")
        .chain_update(uploader.as_bytes())
        .chain_update(b"\0")
        .chain_update(data)
        .finalize();
    PhotoId::from_digest(&digest.into())
}

/// The `whistle-reason` of a refused upload.
pub const PHOTO_EMPTY: &str = "photo_empty";
pub const PHOTO_TOO_LARGE: &str = "photo_too_large";
pub const PHOTO_TYPE: &str = "photo_type";
/// The `whistle-reason` of a report or resolution naming a photo that was never uploaded.
pub const PHOTO_NOT_FOUND: &str = "photo_not_found";
/// The `whistle-reason` of `GetPhoto` of a photo erased under retention or on request.
pub const PHOTO_ERASED: &str = "photo_erased";

/// The bucket, opened on first use (the admin creates it with the streams, perhaps after this
/// service started).
#[derive(Clone)]
pub(crate) struct Photos {
    jetstream: jetstream::Context,
    bucket: std::sync::Arc<OnceCell<(ObjectStore, Stream)>>,
}

impl std::fmt::Debug for Photos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Photos")
            .field("bucket", &PHOTOS_BUCKET)
            .field("open", &self.bucket.initialized())
            .finish()
    }
}

impl Photos {
    pub fn new(jetstream: jetstream::Context) -> Photos {
        Photos {
            jetstream,
            bucket: Default::default(),
        }
    }

    async fn bucket(&self) -> Result<&(ObjectStore, Stream)> {
        self.bucket
            .get_or_try_init(|| async {
                let unavailable =
                    |e: String| Error::Unavailable(format!("photo bucket {PHOTOS_BUCKET}: {e}"));
                let store = self
                    .jetstream
                    .get_object_store(PHOTOS_BUCKET)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                let stream = self
                    .jetstream
                    .get_stream(PHOTOS_STREAM)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                Ok((store, stream))
            })
            .await
    }

    /// Stores `data` if it is a photo within the limits, once for its `uploader`; answers its id.
    pub async fn upload(&self, data: &[u8], uploader: &str) -> Result<v1::UploadPhotoResponse> {
        let media_type = check(data)?;
        let id = photo_id(uploader, data);
        let answer = v1::UploadPhotoResponse {
            photo_id: id.to_string(),
            media_type: media_type.as_str().to_owned(),
            size_bytes: data.len() as u64,
        };
        if self.uploader_of(&id).await?.is_some() {
            return Ok(answer);
        }
        let (store, _) = self.bucket().await?;
        let meta = ObjectMetadata {
            name: id.to_string(),
            metadata: HashMap::from([
                (MEDIA_TYPE.to_owned(), media_type.as_str().to_owned()),
                (UPLOADER.to_owned(), uploader.to_owned()),
            ]),
            ..Default::default()
        };
        store
            .put(meta, &mut &data[..])
            .await
            .map_err(|e| Error::Unavailable(format!("storing photo {id}: {e}")))?;
        Ok(answer)
    }

    /// Who uploaded the photo `id`; `None` when it is not stored.
    async fn uploader_of(&self, id: &PhotoId) -> Result<Option<String>> {
        let (store, _) = self.bucket().await?;
        match store.info(id.as_str()).await {
            Ok(info) if info.deleted => Ok(None),
            Ok(info) => Ok(Some(
                info.metadata.get(UPLOADER).cloned().unwrap_or_default(),
            )),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Unavailable(format!("looking up photo {id}: {e}"))),
        }
    }

    /// Refuses ids that are malformed, too many, or name nothing `sender` uploaded: a report or a
    /// resolution sent through this service names only its sender's photos.
    pub async fn check_stored(&self, ids: &[String], sender: &str) -> Result<()> {
        if ids.len() > MAX_PHOTOS {
            return Err(Error::invalid(format!(
                "{} photos; at most {MAX_PHOTOS}",
                ids.len()
            )));
        }
        for raw in ids {
            let id: PhotoId = raw.parse().map_err(|e| Error::invalid(format!("{e}")))?;
            if self.uploader_of(&id).await?.as_deref() != Some(sender) {
                return Err(Error::Reason(
                    tonic::Code::InvalidArgument,
                    PHOTO_NOT_FOUND,
                    format!("photo {id} was not uploaded by {sender} (Reporting.UploadPhoto)"),
                ));
            }
        }
        Ok(())
    }

    /// The photo's bytes and type, checked against its id.
    async fn read(&self, id: &PhotoId) -> Result<Option<(String, Vec<u8>)>> {
        let (store, stream) = self.bucket().await?;
        let info = match store.info(id.as_str()).await {
            Ok(info) if !info.deleted => info,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == InfoErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Unavailable(format!("looking up photo {id}: {e}"))),
        };
        // Chunks by direct gets, which the service's permissions allow (an ordered consumer
        // would need consumer and flow-control grants besides).
        let subject = format!("$O.{PHOTOS_BUCKET}.C.{}", info.nuid);
        let mut data = Vec::with_capacity(info.size);
        let mut next = 1;
        for _ in 0..info.chunks {
            let chunk = stream
                .direct_get_next_for_subject(subject.as_str(), Some(next))
                .await
                .map_err(|e| Error::Unavailable(format!("reading photo {id}: {e}")))?;
            next = chunk.sequence + 1;
            data.extend_from_slice(&chunk.payload);
        }
        let uploader = info.metadata.get(UPLOADER).map_or("", String::as_str);
        if photo_id(uploader, &data) != *id {
            return Err(Error::Corrupt(format!(
                "photo {id} does not match its bytes"
            )));
        }
        let media_type = info
            .metadata
            .get(MEDIA_TYPE)
            .cloned()
            .or_else(|| MediaType::sniff(&data).map(|t| t.as_str().to_owned()))
            .unwrap_or_default();
        Ok(Some((media_type, data)))
    }

    /// `GetPhoto` on `detail`, which the caller may read (the area was checked): the photo if it
    /// is one of the incident's and the caller may see its photos, recorded before it leaves.
    pub async fn serve(
        &self,
        pool: &sqlx::PgPool,
        principal: &Principal,
        detail: &v1::IncidentDetail,
        photo_id: &str,
        now: DateTime<Utc>,
    ) -> Result<v1::Photo> {
        let id: PhotoId = photo_id
            .parse()
            .map_err(|e| Error::invalid(format!("{e}")))?;
        let incident_id = detail
            .incident
            .as_ref()
            .and_then(|i| i.incident_id.parse::<Uuid>().ok())
            .ok_or_else(|| Error::Corrupt("an incident without its id".into()))?;
        if !may_see(principal, detail) {
            return Err(Error::PermissionDenied(format!(
                "this {} token may not see the photos of incident {incident_id}",
                principal.role.as_str()
            )));
        }
        let photo = detail
            .photos
            .iter()
            .find(|p| p.photo_id == id.as_str())
            .ok_or_else(|| Error::not_found(format!("incident {incident_id} has no photo {id}")))?;
        if let Some(erased_at) = &photo.erased_at {
            let at = DateTime::from_timestamp(erased_at.seconds, 0)
                .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            return Err(Error::Reason(
                tonic::Code::NotFound,
                PHOTO_ERASED,
                format!(
                    "photo {id} was erased at {at} ({}); see docs/privacy.md",
                    photo.erased_why
                ),
            ));
        }
        let (media_type, data) = self
            .read(&id)
            .await?
            .ok_or_else(|| Error::not_found(format!("photo {id} is not stored")))?;
        let access = Access {
            token_id: principal.token_id,
            person_id: principal.person.clone(),
            role: principal.role.as_str().to_owned(),
            incident_id,
            report_id: photo.report_id.clone(),
            door: GET_PHOTO.to_owned(),
            photo_id: id.to_string(),
        };
        // Recorded before the answer leaves: no photo without its row.
        contacts::record_access(pool, now, &[access])
            .await
            .map_err(store)?;
        Ok(v1::Photo {
            photo_id: id.to_string(),
            media_type,
            data,
        })
    }
}

/// The type of `data` if it may be stored as a photo.
fn check(data: &[u8]) -> Result<MediaType> {
    if data.is_empty() {
        return Err(Error::Reason(
            tonic::Code::InvalidArgument,
            PHOTO_EMPTY,
            "the photo is empty".into(),
        ));
    }
    if data.len() > MAX_PHOTO_BYTES {
        return Err(Error::Reason(
            tonic::Code::InvalidArgument,
            PHOTO_TOO_LARGE,
            format!(
                "the photo has {} bytes; at most {MAX_PHOTO_BYTES} (compress it on the device)",
                data.len()
            ),
        ));
    }
    MediaType::sniff(data).ok_or_else(|| {
        Error::Reason(
            tonic::Code::InvalidArgument,
            PHOTO_TYPE,
            "not a JPEG, PNG or WebP image".into(),
        )
    })
}

/// Whether `principal`, who may read the incident, may see its photos: the area's operators, a
/// liaison whose department has (or had) a task on it, and a grid worker who reported it.
/// Viewers (the wall's read-only screens) may not.
pub(crate) fn may_see(principal: &Principal, detail: &v1::IncidentDetail) -> bool {
    match principal.role {
        Role::Operator => true,
        Role::Liaison => principal.department.as_deref().is_some_and(|own| {
            detail
                .tasks
                .iter()
                .filter_map(|t| t.state.as_ref())
                .any(|task| task.department_code == own)
        }),
        Role::GridWorker => principal
            .person
            .as_deref()
            .is_some_and(|person| detail.reports.iter().any(|r| r.reporter_id == person)),
        Role::Viewer
        | Role::Open311
        | Role::Hotline
        | Role::Member
        | Role::Leader
        | Role::Device => false,
    }
}

/// Leaves the photos in `detail` only for those who may see them.
pub(crate) fn show(principal: &Principal, detail: &mut v1::IncidentDetail) {
    if !may_see(principal, detail) {
        detail.photos.clear();
        for report in &mut detail.reports {
            report.photo_ids.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<MediaType>) -> &'static str {
        match result {
            Err(Error::Reason(_, reason, _)) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_small_images_told_by_their_bytes_are_stored() {
        assert_eq!(check(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(), MediaType::Jpeg);
        assert_eq!(reason(check(b"")), PHOTO_EMPTY);
        assert_eq!(reason(check(b"<svg onload=alert(1)>")), PHOTO_TYPE);
        let mut big = vec![0u8; MAX_PHOTO_BYTES + 1];
        big[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
        assert_eq!(reason(check(&big)), PHOTO_TOO_LARGE);
        assert!(check(&big[..MAX_PHOTO_BYTES]).is_ok());
    }
}
