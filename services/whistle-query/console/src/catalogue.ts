// The dispatch catalogue of the running policy (CommandCenter.GetCatalogue): the report form's
// groups and categories, and category names everywhere. Loaded once signed in; the last copy is kept
// in localStorage so the form still offers categories when it opens offline.
import { useEffect, useState } from "preact/hooks";
import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { cc } from "./api";
import { getLang } from "./i18n";
import { CatalogueSchema, type Catalogue } from "./gen/whistle/v1/command_center_pb.js";

const KEY = "whistle.catalogue";
let current: Catalogue | null = null;
const categoryNames = new Map<string, { zh: string; en: string }>();
const groupNames = new Map<string, { zh: string; en: string }>();
const rules = new Map<string, { photoRequired: boolean; afterPhotoRequired: boolean }>();
const listeners = new Set<() => void>();

function use(c: Catalogue) {
  current = c;
  categoryNames.clear();
  groupNames.clear();
  rules.clear();
  for (const g of c.groups) {
    groupNames.set(g.code, { zh: g.nameZh, en: g.nameEn });
    for (const x of g.categories) {
      categoryNames.set(x.code, { zh: x.nameZh, en: x.nameEn });
      rules.set(x.code, { photoRequired: x.photoRequired, afterPhotoRequired: x.afterPhotoRequired });
    }
  }
  listeners.forEach((l) => l());
}

try {
  const saved = localStorage.getItem(KEY);
  if (saved) use(fromJsonString(CatalogueSchema, saved));
} catch {
  // no storage, or a copy from an older schema: the next load replaces it
}

let loading: Promise<void> | null = null;
/** Fetches the catalogue (once per page; again after a failure). */
export function loadCatalogue(): Promise<void> {
  loading ??= cc.getCatalogue({}).then(
    (c) => {
      use(c);
      try {
        localStorage.setItem(KEY, toJsonString(CatalogueSchema, c));
      } catch {
        // storage full or disabled: the page keeps it in memory
      }
    },
    (e) => {
      loading = null;
      throw e;
    },
  );
  return loading;
}

/** The catalogue, re-rendering when it arrives; null before the first one. */
export function useCatalogue(): Catalogue | null {
  const [, setV] = useState(0);
  useEffect(() => {
    const l = () => setV((v) => v + 1);
    listeners.add(l);
    loadCatalogue().catch(() => {});
    return () => void listeners.delete(l);
  }, []);
  return current;
}

/** A category code's name from the policy catalogue (or the server's name, or the code). */
export function categoryName(code: string, serverName?: string): string {
  const n = categoryNames.get(code);
  if (n) return getLang() === "zh" ? n.zh : n.en;
  return serverName || code;
}
export function groupName(code: string): string {
  const n = groupNames.get(code);
  return n ? (getLang() === "zh" ? n.zh : n.en) : code;
}

/** What the policy asks of a category's reports and resolutions (the server checks it too). */
export function categoryRules(code: string): { photoRequired: boolean; afterPhotoRequired: boolean } {
  return rules.get(code) ?? { photoRequired: false, afterPhotoRequired: false };
}
