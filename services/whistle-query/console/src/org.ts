// Names of org units (from GetOrgTree) and of departments (from the department scoreboards), kept
// for the page's life so panels can show names where the RPCs give codes.
import { cc } from "./api";
import type { OrgNode } from "./gen/whistle/v1/command_center_pb.js";

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

export function orgName(code: string): string {
  return orgs.get(code)?.name ?? code;
}

/** 东胜区 / 交通街道 for a street code, from the cached tree. */
export function placeName(district: string, street?: string, community?: string): string {
  return [district, street, community].filter((c) => c).map((c) => orgName(c!)).join(" / ");
}

export function deptName(code: string): string {
  return departments.get(code) ?? code;
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
