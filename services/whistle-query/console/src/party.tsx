// 党建引领: the Party's part of the selected area on the command screen (docs/party.md, "The
// screen") — members registered (双报到) and teams, the volunteers' claims today, the service hours
// this month, open small wishes (微心愿) and the open incidents a paired leader endorsed (领导督办),
// with the children of the area. Read from CommandCenter.GetPartyPanel; Screen reloads it on the
// offer and endorsement events of the live feed and every 15 s besides.
import { t } from "./i18n";
import type { PartyPanel as PartyData, PartyMarkedIncident } from "./gen/whistle/v1/command_center_pb.js";
import { num, type Loaded } from "./util";
import { orgName } from "./org";
import { Panel } from "./panel";

/** The events after which the panel (and the marks it gives the overdue list and map) may change. */
export function movesParty(kind: string): boolean {
  return (
    kind.startsWith("offer.") ||
    ["incident.endorsed", "incident.adopted", "incident.resolved", "incident.closed", "incident.closed_unverified", "incident.overdue"].includes(kind)
  );
}

/** The marks of the open incidents the panel names: 领导督办 and 主动治理, by incident id. */
export function marksOf(party: PartyData | undefined): Map<string, PartyMarkedIncident> {
  return new Map((party?.marked ?? []).map((m) => [m.incidentId, m]));
}

/** The 领导督办 / 主动治理 badges of an incident, as the overdue list and the drawer show them. */
export function MarkTags({ mark }: { mark?: PartyMarkedIncident }) {
  if (!mark) return null;
  return (
    <span class="mark-tags">
      {mark.endorsed && (
        <span class="mark-tag endorsed-tag" data-testid="endorsed-mark">
          {t("endorsedTag")}
        </span>
      )}
      {mark.proactive && (
        <span class="mark-tag proactive-tag" data-testid="proactive-mark">
          {t("proactiveTag")}
        </span>
      )}
    </span>
  );
}

export function PartyPanel({ party, area }: { party: Loaded<PartyData>; area: string }) {
  const p = party.data;
  const hours = p ? Number(p.serviceMinutesMonth) / 60 : undefined;
  const figures: { id: string; label: string; value?: string; raw?: number | string; cls?: string; title?: string }[] = [
    { id: "party-members", label: t("partyMembers"), value: p && num(p.total?.members).toLocaleString(), raw: p ? num(p.total?.members) : "" },
    { id: "party-teams", label: t("partyTeams"), value: p && num(p.total?.teams).toLocaleString(), raw: p ? num(p.total?.teams) : "" },
    { id: "party-claims", label: t("partyClaimsToday"), value: p && num(p.claimsToday).toLocaleString(), raw: p ? num(p.claimsToday) : "", cls: "good" },
    {
      id: "party-hours",
      label: t("partyHoursMonth"),
      value: hours === undefined ? undefined : hours.toLocaleString(undefined, { maximumFractionDigits: 1 }),
      raw: p ? String(p.serviceMinutesMonth) : "",
      title: p ? t("partyHoursTitle", { n: p.confirmedMonth }) : undefined,
    },
    { id: "party-wishes", label: t("partyOpenWishes"), value: p && num(p.openWishes).toLocaleString(), raw: p ? num(p.openWishes) : "", cls: "warn" },
    { id: "party-endorsed", label: t("endorsedTag"), value: p && num(p.endorsedOpen).toLocaleString(), raw: p ? num(p.endorsedOpen) : "", cls: "bad" },
  ];
  const newest = p?.newestWishes[0];
  return (
    <Panel
      title={t("pParty")}
      testid="panel-party"
      area={p && party.key === area ? area : ""}
      load={party}
      class="h-party"
      attrs={{ "data-proactive": p ? p.proactiveOpen : "" }}
      extra={<span class="muted">{orgName(area)}</span>}
    >
      <div class="party-figures">
        {figures.map((f) => (
          <div class={`party-figure ${f.cls ?? ""}`} data-testid={f.id} title={f.title}>
            <span class="party-value" data-testid={`${f.id}-value`} data-value={f.raw ?? ""}>
              {f.value ?? "—"}
            </span>
            <span class="party-label">{f.label}</span>
          </div>
        ))}
      </div>
      {newest && (
        <div class="party-wish" data-testid="party-newest-wish" data-offer={newest.offerId}>
          <span class="party-wish-tag">{t("partyWish")}</span>
          <span class="party-wish-title">{newest.title}</span>
          <span class="muted">{orgName(newest.communityCode)}</span>
        </div>
      )}
      {p && p.children.length > 0 && (
        <ul class="party-children">
          {p.children.map((c) => (
            <li data-testid="party-child" data-code={c.areaCode} data-members={c.members} data-teams={c.teams}>
              <span class="party-child-name">{c.name || orgName(c.areaCode)}</span>
              <span class="party-child-figures">{t("partyChildFigures", { members: c.members.toLocaleString(), teams: c.teams.toLocaleString() })}</span>
            </li>
          ))}
        </ul>
      )}
    </Panel>
  );
}
