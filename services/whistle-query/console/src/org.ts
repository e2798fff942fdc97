// Names of org units (from GetOrgTree) and of departments (from ListDepartments), kept
// for the page's life so panels can show names where the RPCs give codes.
import { cc } from "./api";
import type { OrgNode } from "./gen/whistle/v1/command_center_pb.js";
import { t } from "./i18n";
import { describe } from "./errors";

export interface OrgInfo {
  code: string;
  name: string;
  level: number;
  lat: number;
  lon: number;
  children?: string[];
}
export const orgs = new Map<string, OrgInfo>();
export const departments = new Map<string, string>();

function add(n: OrgNode) {
  const prev = orgs.get(n.code);
  const info: OrgInfo = { code: n.code, name: n.name, level: n.level, lat: n.lat, lon: n.lon, children: prev?.children };
  if (n.children.length) info.children = n.children.map((c) => c.code);
  orgs.set(n.code, info);
  n.children.forEach(add);
}

/** The node and `depth` levels below it, cached. */
export async function loadOrg(code: string, depth = 1, signal?: AbortSignal): Promise<OrgInfo> {
  const have = orgs.get(code);
  if (have?.children && depth <= 1) return have;
  const node = await cc.getOrgTree({ rootCode: code, depth }, { signal });
  add(node);
  return orgs.get(node.code)!;
}

// Names not cached yet are fetched in the background (the unit's parent, one level down) and the
// views re-render when they arrive: a code is never shown in place of a name.
const nameListeners = new Set<() => void>();
const asked = new Map<string, number>();
export function onOrgNames(l: () => void): () => void {
  nameListeners.add(l);
  return () => nameListeners.delete(l);
}

function fetchName(code: string) {
  const target = code.length > 6 ? code.slice(0, code.length === 15 ? 12 : code.length - 3) : code;
  const at = asked.get(target);
  if (at && Date.now() - at < 30000) return;
  asked.set(target, Date.now());
  cc.getOrgTree({ rootCode: target, depth: 1 }).then(
    (node) => {
      add(node);
      nameListeners.forEach((l) => l());
    },
    () => {},
  );
}

/** The unit's name, or "" while it is being fetched. */
export function orgName(code: string): string {
  const name = orgs.get(code)?.name;
  if (name) return name;
  if (/^\d{6}(\d{3}){0,3}$/.test(code)) fetchName(code);
  return "";
}

/** 东胜区 / 交通街道 for a street code, from the cached tree. */
export function placeName(district: string, street?: string, community?: string): string {
  return [district, street, community]
    .filter((c) => c)
    .map((c) => orgName(c!))
    .filter((n) => n)
    .join(" / ");
}

/** A department's name; "" when the page has not learnt it (callers say 相关部门). */
export function deptName(code: string): string {
  return departments.get(code) ?? "";
}

/** The chain of area codes from the root (the token's area) down to `code`. */
export function areaChain(root: string, code: string): string[] {
  const chain: string[] = [root];
  for (const len of [6, 9, 12, 15]) {
    if (code.length < len) break;
    const c = code.slice(0, len);
    if (c === root || chain.includes(c)) continue;
    if (c.length > root.length || (isCity(root) && len === 6)) chain.push(c);
  }
  return chain;
}

export const isCity = (code: string) => code.length === 6 && code.endsWith("00");

const deptAreas = new Set<string>();
/** Learns the names of the departments serving `area` (a district or the city), once per area. */
export function loadDepartments(area: string) {
  const code = area.slice(0, 6);
  if (deptAreas.has(code)) return;
  deptAreas.add(code);
  cc.listDepartments({ areaCode: code }).then(
    (r) => {
      for (const d of r.departments) departments.set(d.code, d.name);
      nameListeners.forEach((l) => l());
    },
    // Asked again after a lost connection; a refusal (a leader's token, which reads no
    // departments) stands, or every render would ask again.
    (e) => describe(e).kind === "network" && deptAreas.delete(code),
  );
}

/**
 * A note as a person should read it: department codes dispatch writes into notes ("150602-heating
 * 超过报到时限未报到", a dispatched task's note) become the department's name.
 */
export function withNames(text: string): string {
  return text.replace(/\b\d{6}-[a-z_]+\b/g, (code) => {
    loadDepartments(code);
    return deptName(code) || t("someDepartment");
  });
}
