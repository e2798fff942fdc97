// Photos: taken with the phone's camera, compressed on the device, uploaded through
// Reporting.UploadPhoto (the id is the SHA-256 of the bytes, so a re-upload after a lost answer
// stores nothing twice), and shown before/after from CommandCenter.GetPhoto. Photos are personal
// data: the server logs every GetPhoto, so a page fetches each photo once and keeps it.
import { useEffect, useState } from "preact/hooks";
import { ConnectError } from "@connectrpc/connect";
import { cc, reporting } from "./api";
import { t } from "./i18n";
import { fmtDateTime, tsMs } from "./util";
import { PhotoKind, type IncidentPhoto } from "./gen/whistle/v1/command_center_pb.js";

/** The longest side after compression: plenty to see a pothole, a fraction of a camera file. */
const MAX_SIDE = 1600;
/** The server's limit (whistle_domain::photo::MAX_PHOTO_BYTES). */
const MAX_BYTES = 2 * 1024 * 1024;
/** At most this many photos on a report or a resolution (whistle_domain::photo::MAX_PHOTOS). */
export const MAX_PHOTOS = 9;

/** The image as a JPEG whose longest side is at most MAX_SIDE, under the server's limit. */
export async function compress(file: Blob): Promise<Blob> {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d")!.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  for (const quality of [0.82, 0.7, 0.55, 0.4]) {
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
    if (blob && blob.size <= MAX_BYTES) return blob;
  }
  throw new Error("photo too large after compression");
}

/** Uploads each photo (again after a failure: the same bytes get the same id) and answers the ids. */
export async function uploadAll(photos: Blob[]): Promise<string[]> {
  const ids: string[] = [];
  for (const photo of photos) {
    const res = await reporting.uploadPhoto({ data: new Uint8Array(await photo.arrayBuffer()) });
    ids.push(res.photoId);
  }
  return ids;
}

/** Object URLs of blobs shown as thumbnails, revoked when the blobs go. */
function useObjectUrls(blobs: Blob[]): string[] {
  const [urls, setUrls] = useState<string[]>([]);
  useEffect(() => {
    const made = blobs.map((b) => URL.createObjectURL(b));
    setUrls(made);
    return () => made.forEach((u) => URL.revokeObjectURL(u));
  }, [blobs]);
  return urls;
}

/** The camera button and the thumbnails of the photos taken so far, each removable. */
export function PhotoPicker(p: { photos: Blob[]; onChange: (photos: Blob[]) => void; label: string; required?: boolean; testid: string }) {
  const urls = useObjectUrls(p.photos);
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState(false);
  async function take(e: Event) {
    const input = e.target as HTMLInputElement;
    const files = [...(input.files ?? [])];
    input.value = "";
    if (!files.length) return;
    setBusy(true);
    setFailed(false);
    const added: Blob[] = [];
    for (const f of files.slice(0, MAX_PHOTOS - p.photos.length)) {
      try {
        added.push(await compress(f));
      } catch {
        // Not an image the browser can read: the note below says so.
        setFailed(true);
      }
    }
    setBusy(false);
    if (added.length) p.onChange([...p.photos, ...added]);
  }
  return (
    <div class="photo-picker" data-testid={p.testid} data-count={p.photos.length}>
      <span class="photo-label">
        {p.label}
        {p.required && <span class="muted small"> {t("photoRequiredMark")}</span>}
      </span>
      <div class="thumbs">
        {urls.map((u, i) => (
          <span class="thumb">
            <img src={u} alt={`${p.label} ${i + 1}`} data-testid="photo-thumb" />
            <button type="button" class="thumb-remove" aria-label={`${t("removePhoto")} ${i + 1}`} onClick={() => p.onChange(p.photos.filter((_, j) => j !== i))}>
              ×
            </button>
          </span>
        ))}
        {p.photos.length < MAX_PHOTOS && (
          <label class={`photo-add ${busy ? "busy" : ""}`}>
            <span aria-hidden="true">＋</span>
            <span class="small">{busy ? t("photoCompressing") : t("addPhoto")}</span>
            <input type="file" accept="image/*" capture="environment" multiple class="visually-hidden" data-testid={`${p.testid}-input`} onChange={take} />
          </label>
        )}
      </div>
      {failed && (
        <div class="small bad-text" role="alert">
          {t("photoUnreadable")}
        </div>
      )}
    </div>
  );
}

/** Photos fetched on this page, by incident and photo: each GetPhoto is logged, so once is enough. */
const fetched = new Map<string, Promise<string>>();

function photoUrl(incidentId: string, photoId: string): Promise<string> {
  const key = `${incidentId}/${photoId}`;
  let url = fetched.get(key);
  if (!url) {
    url = cc.getPhoto({ incidentId, photoId }).then((ph) => URL.createObjectURL(new Blob([ph.data as BlobPart], { type: ph.mediaType })));
    url.catch(() => fetched.delete(key));
    fetched.set(key, url);
  }
  return url;
}

/** Where an erased photo was: when and why it went (retention, or a person's request). */
function Erased(p: { at: string; why: string }) {
  return (
    <span class="thumb missing erased small muted" data-testid="incident-photo-erased" title={p.why}>
      {t("photoErased", { at: p.at })}
    </span>
  );
}

function Shown(p: { incidentId: string; photo: IncidentPhoto; n: number; label: string }) {
  const [url, setUrl] = useState("");
  const [failed, setFailed] = useState(false);
  // Erased after the incident was read: GetPhoto says so (`photo_erased`).
  const [erasedNow, setErasedNow] = useState("");
  const [big, setBig] = useState(false);
  const erased = p.photo.erasedAt !== undefined;
  useEffect(() => {
    if (erased) return;
    let live = true;
    photoUrl(p.incidentId, p.photo.photoId).then(
      (u) => live && setUrl(u),
      (e) => {
        if (!live) return;
        const err = ConnectError.from(e);
        if (err.metadata.get("whistle-reason") === "photo_erased") setErasedNow(err.rawMessage);
        else setFailed(true);
      },
    );
    return () => {
      live = false;
    };
  }, [p.incidentId, p.photo.photoId, erased]);
  if (erased) return <Erased at={fmtDateTime(tsMs(p.photo.erasedAt))} why={p.photo.erasedWhy} />;
  if (erasedNow) return <Erased at="" why={erasedNow} />;
  if (failed) return <span class="thumb missing small muted">{t("photoUnavailable")}</span>;
  if (!url) return <span class="thumb loading" aria-busy="true" />;
  return (
    <button type="button" class={`thumb shown ${big ? "big" : ""}`} aria-pressed={big} aria-label={`${p.label} ${p.n}`} onClick={() => setBig(!big)}>
      <img src={url} alt={`${p.label} ${p.n}`} data-testid="incident-photo" data-kind={PhotoKind[p.photo.kind]} data-photo={p.photo.photoId} />
    </button>
  );
}

/** An incident's photos as before (the reports') and after (the resolutions'). */
export function IncidentPhotos(p: { incidentId: string; photos: IncidentPhoto[] }) {
  if (!p.photos.length) return null;
  const groups = [
    { kind: PhotoKind.BEFORE, label: t("photosBefore") },
    { kind: PhotoKind.AFTER, label: t("photosAfter") },
  ];
  return (
    <div class="incident-photos" data-testid="incident-photos">
      {groups.map((g) => {
        const list = p.photos.filter((x) => x.kind === g.kind);
        return (
          <div class="photo-group" data-testid={`photos-${PhotoKind[g.kind].toLowerCase()}`}>
            <h4>
              {g.label} ({list.length})
            </h4>
            {list.length === 0 ? (
              <div class="muted small">—</div>
            ) : (
              <div class="thumbs">
                {list.map((x, i) => (
                  <Shown incidentId={p.incidentId} photo={x} n={i + 1} label={g.label} />
                ))}
              </div>
            )}
          </div>
        );
      })}
    </div>
  );
}
