// 网格事件分布: the map. The base layer is the city's boundaries (maps/areas.geojson, served with the
// console: the districts of the org tree, from a published open package or the city's own approved
// map — docs/console.md "The map"); on top, every grid of the area as a dot (red when it holds an
// overdue incident) and, below the city, each sub-area as a bubble sized by its open incidents. At the
// city level the districts are coloured by their open incidents on a labelled scale. Labels and the
// legend are DOM text over the canvas, placed so that no two labels overlap.
import { useContext, useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { cc } from "./api";
import { t, incidentStatusLabel } from "./i18n";
import type { Overview, PartyMarkedIncident } from "./gen/whistle/v1/command_center_pb.js";
import { IncidentStatus } from "./gen/whistle/v1/common_pb.js";
import { useLoad, num, type Loaded } from "./util";
import { Chart, echarts } from "./chart";
import { orgs, isCity } from "./org";
import { Panel } from "./panel";
import { ScaleContext } from "./scale";

/** The colours of the districts' scale, from few to many open incidents. */
const RAMP = ["#123a66", "#1d5fa3", "#2f8cff", "#ffd166", "#ff5d6c"];
const GRID_OPEN = "#39c5ff";
const GRID_OVERDUE = "#ff5d6c";
const GRID_QUIET = "rgba(127,166,201,0.35)";
const PIN_ENDORSED = "#ffd166";
const PIN_PROACTIVE = "#3ee6a5";

interface Shape {
  code: string;
  name: string;
  feature: any;
  /** Where its label goes: the centroid of its largest ring (a seat may sit at the edge). */
  centre: [number, number];
}

/** The area-weighted centroid of a feature's largest outer ring (planar: a district is small). */
function centreOf(feature: any): [number, number] {
  const g = feature.geometry ?? {};
  const polygons: number[][][][] = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
  let best: [number, number] = [0, 0];
  let bestArea = 0;
  for (const polygon of polygons) {
    const ring = polygon[0] ?? [];
    let a = 0, cx = 0, cy = 0;
    for (let i = 0; i + 1 < ring.length; i++) {
      const [x0, y0] = ring[i], [x1, y1] = ring[i + 1];
      const cross = x0 * y1 - x1 * y0;
      a += cross;
      cx += (x0 + x1) * cross;
      cy += (y0 + y1) * cross;
    }
    if (Math.abs(a) > bestArea) {
      bestArea = Math.abs(a);
      best = [cx / (3 * a), cy / (3 * a)];
    }
  }
  return best;
}
interface BaseMap {
  version: string;
  /** The districts (and the city's outline), by code. */
  shapes: Map<string, Shape>;
}

let baseMap: Promise<BaseMap | null> | null = null;
/** The base map, fetched once from the console's own origin; null when there is none. */
function loadBaseMap(): Promise<BaseMap | null> {
  baseMap ??= fetch("maps/areas.geojson").then(
    async (r) => {
      if (!r.ok) return null;
      const fc = await r.json();
      const shapes = new Map<string, Shape>();
      for (const f of fc.features ?? []) {
        const code = String(f.properties?.code ?? "");
        if (code) shapes.set(code, { code, name: String(f.properties?.name ?? code), feature: f, centre: centreOf(f) });
      }
      return { version: String(fc.whistle?.version ?? ""), shapes };
    },
    () => {
      baseMap = null; // offline for a moment: try again at the next render
      return null;
    },
  );
  return baseMap;
}

/** Registers the shapes drawn for an area (ECharts names regions by `properties.name`: the code). */
function register(base: BaseMap, codes: string[]): string {
  const name = `whistle-${codes.join("-")}`;
  if (!echarts.getMap(name)) {
    const features = codes
      .map((c) => base.shapes.get(c))
      .filter((s): s is Shape => !!s)
      .map((s) => ({ ...s.feature, properties: { name: s.code } }));
    echarts.registerMap(name, { type: "FeatureCollection", features } as any);
  }
  return name;
}

interface Anchor {
  code: string;
  text: string;
  open: number;
  x: number;
  y: number;
  /** The bubble's radius around the anchor (0 for a district's polygon). */
  r: number;
}

export function MapPanel(p: {
  area: string;
  bump: number;
  overview: Loaded<Overview>;
  /** Open incidents marked 领导督办 or 主动治理 (GetPartyPanel), pinned on their grids. */
  marked: PartyMarkedIncident[];
  orgVersion: number;
  onDrill: (c: string) => void;
  onGrid: (code: string, name: string) => void;
  onOpen: (incidentId: string) => void;
}) {
  const map = useLoad((signal) => cc.getGridMap({ areaCode: p.area }, { signal }), p.area, 15000);
  const { px } = useContext(ScaleContext);
  const last = useRef(0);
  useEffect(() => {
    if (p.bump && Date.now() - last.current > 4000) {
      last.current = Date.now();
      map.reload();
    }
  }, [p.bump]);
  const [base, setBase] = useState<BaseMap | null>(null);
  useEffect(() => {
    loadBaseMap().then(setBase);
  }, []);

  const cells = map.data?.cells ?? [];
  const withPos = cells.filter((c) => c.lat || c.lon);
  const district = p.area.length >= 6 && !isCity(p.area) ? p.area.slice(0, 6) : "";
  // The shapes drawn: the city's districts, or the selected area's district.
  const shapeCodes = useMemo(() => {
    if (!base) return [];
    if (district) return base.shapes.has(district) ? [district] : [];
    return [...base.shapes.keys()].filter((c) => c.startsWith(p.area.slice(0, 4)) && !isCity(c)).sort();
  }, [base, p.area]);
  const subAreas = (orgs.get(p.area)?.children ?? []).map((c) => orgs.get(c)!).filter((n) => n && (n.lat || n.lon));
  const sums = subAreas.map((ch) => {
    let open = 0,
      overdue = 0;
    for (const c of withPos)
      if (c.gridCode.startsWith(ch.code)) {
        open += num(c.openIncidents);
        overdue += num(c.overdue);
      }
    return { ch, open, overdue };
  });
  // Districts are polygons; streets and communities (which have no published boundaries) bubbles.
  const polygons = !district && shapeCodes.length > 0;
  const maxSum = Math.max(1, ...sums.map((x) => x.open));
  const maxGrid = Math.max(1, ...withPos.map((c) => num(c.openIncidents)));
  const bubble = (open: number) => (polygons ? 0 : (24 + 64 * Math.sqrt(open / maxSum)) * px);
  // A pin per marked incident whose grid has a position: gold for 领导督办, green for 主动治理.
  const cellAt = new Map(withPos.map((c) => [c.gridCode, c]));
  const pins = p.marked.filter((m) => cellAt.has(m.gridCode));

  const option = useMemo(() => {
    const mapName = base && shapeCodes.length ? register(base, shapeCodes) : "";
    // In a district and below, the view closes in on the area's grids and sub-areas (a banner is
    // mostly grassland; its streets gather round the seat).
    let bounding: number[][] | undefined;
    if (district && withPos.length) {
      const lons = withPos.map((c) => c.lon).concat(subAreas.map((c) => c.lon));
      const lats = withPos.map((c) => c.lat).concat(subAreas.map((c) => c.lat));
      const m = Math.max(0.01, (Math.max(...lons) - Math.min(...lons)) * 0.2, (Math.max(...lats) - Math.min(...lats)) * 0.2);
      bounding = [
        [Math.min(...lons) - m, Math.max(...lats) + m],
        [Math.max(...lons) + m, Math.min(...lats) - m],
      ];
    }
    const gridSize = (open: number) => (open ? 6 + 12 * Math.sqrt(open / maxGrid) : withPos.length > 600 ? 3 : 5) * px;
    return {
      tooltip: {
        trigger: "item",
        textStyle: { fontSize: 20 * px },
        formatter: (x: any) => `${x.data?.title ?? x.name}<br/>${t("gridOpen")}: <b>${x.data?.open ?? x.value ?? 0}</b><br/>${t("kpiOverdue")}: ${x.data?.overdue ?? 0}`,
      },
      geo: mapName
        ? {
            map: mapName,
            roam: false,
            boundingCoords: bounding,
            layoutCenter: ["50%", "50%"],
            layoutSize: "94%",
            silent: !polygons,
            label: { show: false },
            itemStyle: { areaColor: "#0c2d55", borderColor: "rgba(120,200,255,0.75)", borderWidth: 1.5 * px },
            emphasis: { label: { show: false }, itemStyle: { areaColor: "#1b4f8a" } },
            select: { disabled: true },
          }
        : undefined,
      // No base map (a city that has not loaded one): plain longitude/latitude axes.
      xAxis: mapName ? undefined : { type: "value", scale: true, show: false },
      yAxis: mapName ? undefined : { type: "value", scale: true, show: false },
      grid: mapName ? undefined : { left: 10 * px, right: 10 * px, top: 10 * px, bottom: 10 * px },
      visualMap: polygons
        ? { type: "continuous", show: false, min: 0, max: maxSum, seriesIndex: 0, inRange: { color: RAMP } }
        : undefined,
      series: [
        polygons
          ? {
              type: "map",
              geoIndex: 0,
              name: t("mapDistricts"),
              data: sums.map(({ ch, open, overdue }) => ({ name: ch.code, value: open, title: ch.name, open, overdue, code: ch.code })),
            }
          : { type: "scatter", coordinateSystem: mapName ? "geo" : "cartesian2d", data: [] },
        {
          type: "scatter",
          name: t("mapGrids"),
          coordinateSystem: mapName ? "geo" : "cartesian2d",
          data: withPos.map((c) => {
            const open = num(c.openIncidents), overdue = num(c.overdue);
            return {
              name: c.gridCode,
              title: c.name || t("grid"),
              value: [c.lon, c.lat],
              code: c.gridCode,
              open,
              overdue,
              symbolSize: gridSize(open),
              itemStyle: { color: overdue ? GRID_OVERDUE : open ? GRID_OPEN : GRID_QUIET, borderColor: open ? "#02101f" : "transparent", borderWidth: px },
            };
          }),
          z: 4,
        },
        {
          type: "scatter",
          name: t("mapSubAreas"),
          coordinateSystem: mapName ? "geo" : "cartesian2d",
          data: polygons ? [] : sums.map(({ ch, open, overdue }) => ({ name: ch.code, title: ch.name, value: [ch.lon, ch.lat], code: ch.code, open, overdue, symbolSize: bubble(open) })),
          itemStyle: { color: "rgba(57,197,255,0.10)", borderColor: "rgba(255,233,176,0.85)", borderWidth: 2 * px },
          emphasis: { scale: 1.05, itemStyle: { borderColor: "#ffd166" } },
          z: 3,
        },
        {
          type: "scatter",
          name: t("mapMarked"),
          coordinateSystem: mapName ? "geo" : "cartesian2d",
          symbol: "pin",
          data: pins.map((m) => {
            const c = cellAt.get(m.gridCode)!;
            const label = [m.endorsed ? t("endorsedTag") : "", m.proactive ? t("proactiveTag") : ""].filter(Boolean).join("·");
            return {
              name: m.incidentId,
              title: `${label}｜${m.title}`,
              value: [c.lon, c.lat],
              incident: m.incidentId,
              open: num(c.openIncidents),
              overdue: num(c.overdue),
              symbolSize: 30 * px,
              itemStyle: { color: m.endorsed ? PIN_ENDORSED : PIN_PROACTIVE, borderColor: "#02101f", borderWidth: px },
            };
          }),
          z: 5,
        },
      ],
    };
  }, [map.data, p.orgVersion, px, base, shapeCodes, p.marked]);

  // Anchors of the labels in the chart's pixels, read once the chart has drawn.
  const [anchors, setAnchors] = useState<Anchor[]>([]);
  const sumsRef = useRef(sums);
  sumsRef.current = sums;
  const onFinished = (chart: echarts.ECharts) => {
    const coord = option.geo ? { geoIndex: 0 } : { gridIndex: 0 };
    const next: Anchor[] = [];
    for (const { ch, open } of sumsRef.current) {
      const shape = polygons ? base?.shapes.get(ch.code) : undefined;
      const at = chart.convertToPixel(coord as any, shape ? shape.centre : [ch.lon, ch.lat]) as number[] | undefined;
      if (!at || !Number.isFinite(at[0])) continue;
      next.push({ code: ch.code, text: ch.name, open, x: Math.round(at[0]), y: Math.round(at[1]), r: bubble(open) / 2 });
    }
    setAnchors((prev) => (JSON.stringify(prev) === JSON.stringify(next) ? prev : next));
  };

  const o = p.overview.data;
  return (
    <Panel
      title={t("pMap")}
      testid="panel-map"
      area={map.data ? map.key : ""}
      attrs={{
        "data-cells": map.data ? cells.length : "",
        "data-regions": shapeCodes.join(" "),
        "data-map-version": base?.version ?? "",
        "data-marked": pins.map((m) => `${m.gridCode}:${m.endorsed ? "e" : ""}${m.proactive ? "p" : ""}`).join(" "),
      }}
      load={map}
      class="h-map"
      extra={
        <span class="status-chips" data-testid="status-chips">
          {(o?.byStatus ?? [])
            .filter((s) => num(s.count) > 0)
            .map((s) => (
              <span class="chip" data-testid={`status-${s.key}`} data-value={num(s.count)}>
                {statusKeyLabel(s.key)} <b>{num(s.count)}</b>
              </span>
            ))}
        </span>
      }
    >
      <div class="map-stage">
        <Chart
          option={option}
          testid="chart-map"
          onFinished={onFinished}
          onClick={(x) => {
            if (x.seriesIndex === 1) p.onGrid(x.data.code, x.data.title);
            else if (x.seriesIndex === 3) p.onOpen(x.data.incident);
            else if (x.data?.code) p.onDrill(x.data.code);
          }}
        />
        <MapLabels anchors={anchors} onDrill={p.onDrill} />
        <Legend polygons={polygons} max={maxSum} bubbles={!polygons && sums.length > 0} endorsed={pins.some((m) => m.endorsed)} proactive={pins.some((m) => m.proactive)} />
      </div>
    </Panel>
  );
}

/**
 * The sub-areas' names and open counts, as DOM text over the chart: a district's on its centre, a
 * bubble's above it, or else below, beside, at a corner and then ever further out — the first place
 * inside the map that overlaps no label already placed nor the legend; the busiest areas are placed
 * first, and a label with no free place is left out (`data-hidden`) rather than drawn over another.
 */
function MapLabels({ anchors, onDrill }: { anchors: Anchor[]; onDrill: (c: string) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const [places, setPlaces] = useState<Map<string, { left: number; top: number } | null>>(new Map());
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const W = el.clientWidth, H = el.clientHeight;
    const legend = el.parentElement?.querySelector(".map-legend")?.getBoundingClientRect();
    const origin = el.getBoundingClientRect();
    const taken: number[][] = legend ? [[legend.left - origin.left, legend.top - origin.top, legend.right - origin.left, legend.bottom - origin.top]] : [];
    const next = new Map<string, { left: number; top: number } | null>();
    const spans = new Map<string, HTMLElement>();
    el.querySelectorAll<HTMLElement>("[data-code]").forEach((s) => spans.set(s.dataset.code!, s));
    for (const a of [...anchors].sort((x, y) => y.open - x.open)) {
      const span = spans.get(a.code);
      if (!span) continue;
      const w = span.offsetWidth, h = span.offsetHeight, g = 4;
      // A polygon's label sits on its centre first; a bubble's never covers its bubble.
      const candidates = [
        ...(a.r === 0 ? [[a.x - w / 2, a.y - h / 2]] : []),
        [a.x - w / 2, a.y - a.r - h - g],
        [a.x - w / 2, a.y + a.r + g],
        [a.x + a.r + g, a.y - h / 2],
        [a.x - a.r - w - g, a.y - h / 2],
        [a.x + a.r * 0.7 + g, a.y - a.r * 0.7 - h],
        [a.x - a.r * 0.7 - w - g, a.y - a.r * 0.7 - h],
        [a.x + a.r * 0.7 + g, a.y + a.r * 0.7],
        [a.x - a.r * 0.7 - w - g, a.y + a.r * 0.7],
      ];
      // Then ever further out, nearest first, never over the anchor itself.
      const around: number[][] = [];
      for (let dy = -3; dy <= 3; dy++)
        for (let dx = -2; dx <= 2; dx++) {
          const x = a.x - w / 2 + (dx * w) / 2, y = a.y - h / 2 + dy * (h + g);
          const covers = x - a.r < a.x && a.x < x + w + a.r && y - a.r < a.y && a.y < y + h + a.r;
          if ((dx || dy) && !covers) around.push([x, y]);
        }
      around.sort((p, q) => Math.hypot(p[0] + w / 2 - a.x, p[1] + h / 2 - a.y) - Math.hypot(q[0] + w / 2 - a.x, q[1] + h / 2 - a.y));
      candidates.push(...around);
      const free = candidates.find(([x, y]) => x >= 0 && y >= 0 && x + w <= W && y + h <= H && !taken.some((o) => x < o[2] && o[0] < x + w && y < o[3] && o[1] < y + h));
      if (free) {
        taken.push([free[0], free[1], free[0] + w, free[1] + h]);
        next.set(a.code, { left: Math.round(free[0]), top: Math.round(free[1]) });
      } else next.set(a.code, null);
    }
    const same = next.size === places.size && [...next].every(([k, v]) => JSON.stringify(places.get(k)) === JSON.stringify(v));
    if (!same) setPlaces(next);
  });
  return (
    <div class="map-labels" ref={box}>
      {anchors.map((a) => {
        const at = places.get(a.code);
        return (
          <button
            type="button"
            class="map-label"
            data-testid="map-label"
            data-code={a.code}
            data-hidden={at ? undefined : "true"}
            style={at ? { left: `${at.left}px`, top: `${at.top}px` } : { left: "0px", top: "0px", visibility: "hidden" }}
            onClick={() => onDrill(a.code)}
          >
            {a.text} <b>{a.open}</b>
          </button>
        );
      })}
    </div>
  );
}

/** What the colours and marks mean, with the scale's end figures. */
function Legend({ polygons, max, bubbles, endorsed, proactive }: { polygons: boolean; max: number; bubbles: boolean; endorsed: boolean; proactive: boolean }) {
  return (
    <div class="map-legend" data-testid="map-legend">
      {polygons && (
        <div class="legend-scale" data-testid="map-scale" data-min="0" data-max={max}>
          <span class="legend-title">{t("mapScaleTitle")}</span>
          <span class="legend-ramp">
            <span>0</span>
            <i class="ramp" />
            <span>{max}</span>
          </span>
        </div>
      )}
      <div class="legend-row">
        <i class="dot dot-open" /> {t("mapLegendOpen")}
      </div>
      <div class="legend-row">
        <i class="dot dot-overdue" /> {t("mapLegendOverdue")}
      </div>
      {bubbles && (
        <div class="legend-row">
          <i class="dot dot-area" /> {t("mapLegendArea")}
        </div>
      )}
      {endorsed && (
        <div class="legend-row" data-testid="map-legend-endorsed">
          <i class="dot dot-endorsed" /> {t("endorsedTag")}
        </div>
      )}
      {proactive && (
        <div class="legend-row" data-testid="map-legend-proactive">
          <i class="dot dot-proactive" /> {t("proactiveTag")}
        </div>
      )}
    </div>
  );
}

export function statusKeyLabel(key: string): string {
  const name = key.toUpperCase().replace(/^INCIDENT_STATUS_/, "");
  const v = (IncidentStatus as any)[name];
  return typeof v === "number" ? incidentStatusLabel(v) : key;
}

