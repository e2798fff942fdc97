// 人员管理: an operator's people — those posted inside the operator's area (ListPeople) — with
// filters by role and post; 入职 (OnboardPerson), 变更/调岗 (ChangePerson) and 离岗
// (OffboardPerson, with a successor picker). Every change goes through dispatch as a command: one
// transaction with its audit entry, the operator as actor. A refusal is said in words with what to
// do; one for want of a successor lists what the person holds (the status details' PersonHoldings)
// and opens the picker with those who can take it over.
import { useEffect, useMemo, useState } from "preact/hooks";
import { cc, dispatch, uuid, ConnectError, downloadFile } from "./api";
import { t, roleLabel } from "./i18n";
import { describe, type Problem } from "./errors";
import { type PersonEntry } from "./gen/whistle/v1/command_center_pb.js";
import { PersonHoldingsSchema, type PersonHoldings } from "./gen/whistle/v1/people_pb.js";
import { useLoad, tsMs, fmtDateTime } from "./util";
import { type Chrome } from "./main";
import { PageFrame } from "./frame";
import { LoadNote, ProblemNote } from "./notes";
import { Modal } from "./dialog";

export const ROLES = ["grid_worker", "liaison", "operator", "handler"] as const;
type Role = (typeof ROLES)[number];

type Dialog = { kind: "onboard" } | { kind: "change"; person: PersonEntry } | { kind: "offboard"; person: PersonEntry };

/** A person id as dispatch takes it (`PersonId`): 1–64 of A-Z a-z 0-9 . _ : - */
const ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;
/** A mobile (13…–19…, 11 digits) or a landline with its area code; spaces and dashes ignored. */
export function phoneOk(raw: string): boolean {
  const d = raw.replace(/[\s-]/g, "");
  return /^1[3-9]\d{9}$/.test(d) || (/^0[1-9]\d{8,10}$/.test(d));
}
/** Whether `post` has the shape of the role's post (dispatch checks that it exists). */
export function postOk(role: string, post: string): boolean {
  const p = post.trim();
  switch (role) {
    case "grid_worker":
      return /^\d{15}$/.test(p);
    case "liaison":
      return /^\d{6}-[A-Za-z0-9_:]+$/.test(p);
    case "operator":
      return /^\d{6}(\d{3})?$/.test(p);
    case "handler":
      return /^\d{9}(\d{3})?$/.test(p);
    default:
      return false;
  }
}

/** A refusal of a change of people: the sentence, and the holdings when a successor is needed. */
interface Refusal {
  problem: Problem;
  holdings?: PersonHoldings;
}
function refusal(e: unknown): Refusal {
  const problem = describe(e, "people");
  const err = ConnectError.from(e);
  if (err.metadata.get("whistle-reason") === "successor_needed") {
    const [holdings] = err.findDetails(PersonHoldingsSchema);
    return { problem, holdings };
  }
  return { problem };
}

/** What a person holds, line by line, in words. */
function HoldingsList({ h, names }: { h: PersonHoldings; names: Map<string, string> }) {
  const name = (id: string) => (names.get(id) ? `${names.get(id)}（${id}）` : id);
  return (
    <ul class="holdings" data-testid="people-holdings">
      {h.tasks.map((task) => (
        <li data-testid="held-task" data-incident={task.incidentId} data-task={task.taskId}>
          {t("heldTask", { title: task.title, n: task.taskId, dept: names.get(task.departmentCode) ?? task.departmentCode })}
        </li>
      ))}
      {h.gridCode && <li data-testid="held-grid">{t("heldGrid", { grid: names.get(h.gridCode) ?? h.gridCode })}</li>}
      {h.departmentCode && <li data-testid="held-department">{t("heldDepartment", { dept: names.get(h.departmentCode) ?? h.departmentCode })}</li>}
      {h.deputyFor.length > 0 && <li data-testid="held-deputy">{t("heldDeputy", { who: h.deputyFor.map(name).join("、") })}</li>}
      {h.pairedAreas.length > 0 && (
        <li data-testid="held-pairings">{t("heldPairings", { areas: h.pairedAreas.map((a) => names.get(a) ?? a).join("、") })}</li>
      )}
    </ul>
  );
}

/** Who may succeed `leaver`: live people of the same role and post first (they can hold tasks, a
 * grid or a department), leaders for a leader; for an operator or handler, who holds no tasks,
 * anyone live. */
export function successorsFor(leaver: PersonEntry, people: PersonEntry[]): PersonEntry[] {
  const live = people.filter((p) => !p.leftAt && p.personId !== leaver.personId);
  if (leaver.role === "grid_worker" || leaver.role === "liaison") return live.filter((p) => p.role === leaver.role && p.post === leaver.post);
  // A leader's pairings go to another leader (dispatch checks each fits the successor's post).
  if (leaver.role === "leader") return live.filter((p) => p.role === "leader");
  return live;
}

export function People(p: Chrome) {
  const s = p.session;
  const [includeLeft, setIncludeLeft] = useState(false);
  const [role, setRole] = useState<"" | Role>("");
  const [post, setPost] = useState("");
  const [text, setText] = useState("");
  const [dialog, setDialog] = useState<Dialog | null>(null);
  const [msg, setMsg] = useState("");

  const people = useLoad((signal) => cc.listPeople({ areaCode: "", includeLeft }, { signal }), String(includeLeft), 30000);
  const all = people.data?.people ?? [];
  // Names by id and by post code, for the holdings and the successor's line.
  const names = useMemo(() => {
    const m = new Map<string, string>();
    for (const x of all) {
      m.set(x.personId, x.name);
      if (x.postName) m.set(x.post, x.postName);
    }
    return m;
  }, [people.data]);
  const posts = useMemo(() => {
    const m = new Map<string, string>();
    for (const x of all) if (!role || x.role === role) m.set(x.post, x.postName || x.post);
    return [...m].sort((a, b) => a[0].localeCompare(b[0]));
  }, [people.data, role]);
  useEffect(() => {
    if (post && !posts.some(([code]) => code === post)) setPost("");
  }, [posts]);
  const q = text.trim().toLowerCase();
  const shown = all.filter((x) => (!role || x.role === role) && (!post || x.post === post) && (!q || x.name.toLowerCase().includes(q) || x.personId.toLowerCase().includes(q)));

  useEffect(() => {
    if (!msg) return;
    const id = setTimeout(() => setMsg(""), 6000);
    return () => clearTimeout(id);
  }, [msg]);
  const done = (text: string) => {
    setDialog(null);
    setMsg(text);
    people.reload();
  };

  return (
    <PageFrame
      chrome={p}
      cls="people"
      testid="people"
      title={
        <>
          {t("people")} · <b>{s.areaName}</b>
        </>
      }
      toast={msg ? { text: msg, testid: "people-ok" } : null}
      overlays={
        <>
      {dialog?.kind === "onboard" && <OnboardDialog areaCode={s.areaCode} onClose={() => setDialog(null)} onDone={(name) => done(t("onboardedOk", { name }))} />}
      {dialog?.kind === "change" && <ChangeDialog person={dialog.person} people={all} names={names} onClose={() => setDialog(null)} onDone={() => done(t("changedOk", { name: dialog.person.name }))} />}
      {dialog?.kind === "offboard" && <OffboardDialog person={dialog.person} people={all} names={names} onClose={() => setDialog(null)} onDone={() => done(t("offboardedOk", { name: dialog.person.name }))} />}
        </>
      }
    >
        <section class="panel people-list">
          <div class="panel-head">
            <h2 class="panel-title">
              {t("peopleOfArea")} <span class="muted small" data-testid="people-count">{t("peopleCount", { n: shown.length })}</span>
            </h2>
            <LoadNote l={people} testid="people" />
            <button class="link" onClick={() => people.reload()}>
              {t("refresh")}
            </button>
            <button class="primary" data-testid="people-onboard" onClick={() => setDialog({ kind: "onboard" })}>
              {t("onboard")}
            </button>
          </div>
          <Templates />
          <div class="wb-filters" role="search" data-testid="people-filters">
            <input type="search" aria-label={t("search")} placeholder={t("peopleSearchPh")} value={text} data-testid="people-search" onInput={(e) => setText((e.target as HTMLInputElement).value)} />
            <select aria-label={t("personRole")} value={role} data-testid="people-filter-role" onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role | "")}>
              <option value="">{t("allRoles")}</option>
              {ROLES.map((r) => (
                <option value={r}>{roleLabel(r)}</option>
              ))}
            </select>
            <select aria-label={t("post")} value={post} data-testid="people-filter-post" onChange={(e) => setPost((e.target as HTMLSelectElement).value)}>
              <option value="">{t("allPosts")}</option>
              {posts.map(([code, name]) => (
                <option value={code}>{name === code ? code : `${name}（${code}）`}</option>
              ))}
            </select>
            <label class="check">
              <input type="checkbox" checked={includeLeft} data-testid="people-include-left" onChange={(e) => setIncludeLeft((e.target as HTMLInputElement).checked)} />
              {t("includeLeft")}
            </label>
          </div>
          <div class="panel-body">
            {people.data && shown.length === 0 && <div class="empty">{t("noPeople")}</div>}
            {shown.length > 0 && (
              <table class="tasks wide people-table" data-testid="people-table">
                <thead>
                  <tr>
                    <th>{t("personName")}</th>
                    <th>{t("personRole")}</th>
                    <th>{t("post")}</th>
                    <th>{t("phone")}</th>
                    <th>{t("joinedAt")}</th>
                    <th>{t("status")}</th>
                    <th class="act-col">{t("changePerson")}</th>
                    <th class="act-col">{t("offboard")}</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((x) => {
                    const left = !!x.leftAt;
                    return (
                      <tr key={x.personId} data-testid="person-row" data-person={x.personId} data-role={x.role} data-post={x.post} data-left={left ? "1" : ""} class={left ? "row-out" : ""}>
                        <td>
                          <b data-testid="person-name">{x.name}</b>
                          <div class="muted small">{x.personId}</div>
                        </td>
                        <td>{roleLabel(x.role)}</td>
                        <td>
                          {x.postName || x.post}
                          <div class="muted small">{x.post}</div>
                        </td>
                        <td class="small">{x.phoneMasked}</td>
                        <td class="small">{fmtDateTime(tsMs(x.joinedAt))}</td>
                        <td data-testid="person-status">
                          {left ? (
                            <span class="muted">
                              {t("leftOn", { date: fmtDateTime(tsMs(x.leftAt)) })}
                              {x.successorId && <div class="small">{t("succeededBy", { who: names.get(x.successorId) ? `${names.get(x.successorId)}（${x.successorId}）` : x.successorId })}</div>}
                            </span>
                          ) : (
                            <span class="tag">{t("onDuty")}</span>
                          )}
                        </td>
                        <td class="act-col">
                          {!left && (
                            <button class="act" data-testid="person-change" onClick={() => setDialog({ kind: "change", person: x })}>
                              {t("changePerson")}
                            </button>
                          )}
                        </td>
                        <td class="act-col">
                          {!left && (
                            <button class="act danger" data-testid="person-offboard" onClick={() => setDialog({ kind: "offboard", person: x })}>
                              {t("offboard")}
                            </button>
                          )}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            )}
          </div>
        </section>
    </PageFrame>
  );
}

/**
 * Sends a people's command with a command id kept across a network failure (a retry is never
 * applied twice) and renewed after a refusal (the next attempt is a new command).
 */
function useSender() {
  const [commandId, setCommandId] = useState(uuid());
  const [busy, setBusy] = useState(false);
  const [refused, setRefused] = useState<Refusal | null>(null);
  async function send(call: (commandId: string) => Promise<unknown>): Promise<boolean> {
    if (busy) return false;
    setBusy(true);
    setRefused(null);
    try {
      await call(commandId);
      return true;
    } catch (e) {
      const r = refusal(e);
      setRefused(r);
      if (r.problem.kind !== "network") setCommandId(uuid());
      return false;
    } finally {
      setBusy(false);
    }
  }
  return { busy, refused, send };
}

function Buttons(p: { busy: boolean; disabled: boolean; label: string; onClose: () => void }) {
  return (
    <div class="row">
      <button type="submit" class="primary" disabled={p.busy || p.disabled} data-testid="people-submit">
        {p.busy ? t("sending") : p.label}
      </button>
      <button type="button" onClick={p.onClose} data-testid="people-cancel">
        {t("cancel")}
      </button>
    </div>
  );
}

function Hint({ show, text, testid }: { show: boolean; text: string; testid: string }) {
  return show ? (
    <div class="field-hint" data-testid={testid}>
      {text}
    </div>
  ) : null;
}

function postHint(role: string): string {
  return t(`postHint_${role}` as "postHint_grid_worker");
}

function OnboardDialog(p: { areaCode: string; onClose: () => void; onDone: (name: string) => void }) {
  const [v, setV] = useState({ personId: "", name: "", phone: "", role: "liaison" as Role, post: "" });
  const [touched, setTouched] = useState(false);
  const { busy, refused, send } = useSender();
  const departments = useLoad((signal) => cc.listDepartments({ areaCode: p.areaCode }, { signal }), p.areaCode, 0);
  const bad = {
    id: !ID_RE.test(v.personId.trim()),
    name: !v.name.trim() || [...v.name.trim()].length > 64,
    phone: !phoneOk(v.phone),
    post: !postOk(v.role, v.post),
  };
  const invalid = bad.id || bad.name || bad.phone || bad.post;
  const set = (k: keyof typeof v) => (e: Event) => {
    const value = (e.target as HTMLInputElement).value;
    setV((old) => ({ ...old, [k]: value }));
  };
  const submit = async () => {
    setTouched(true);
    if (invalid) return;
    const ok = await send((commandId) =>
      dispatch.onboardPerson({
        commandId,
        body: { case: "onboardPerson", value: { personId: v.personId.trim(), name: v.name.trim(), phone: v.phone, role: v.role, post: v.post.trim() } },
      }),
    );
    if (ok) p.onDone(v.name.trim());
  };
  return (
    <Modal title={t("onboard")} testid="people-onboard-dialog" onClose={p.onClose} onSubmit={submit}>
      <label>
        {t("personId")}
        <input value={v.personId} maxLength={64} onInput={set("personId")} data-testid="onboard-id" placeholder="li-150602-urban_management-2" />
      </label>
      <Hint show={touched && bad.id} text={t("idHint")} testid="onboard-id-hint" />
      <label>
        {t("personName")}
        <input value={v.name} maxLength={64} onInput={set("name")} data-testid="onboard-name" />
      </label>
      <Hint show={touched && bad.name} text={t("nameHint")} testid="onboard-name-hint" />
      <label>
        {t("phone")}
        <input value={v.phone} inputMode="tel" onInput={set("phone")} data-testid="onboard-phone" placeholder="13800008000" />
      </label>
      <Hint show={touched && bad.phone} text={t("phoneHint")} testid="onboard-phone-hint" />
      <label>
        {t("personRole")}
        <select value={v.role} onChange={set("role")} data-testid="onboard-role">
          {ROLES.map((r) => (
            <option value={r}>{roleLabel(r)}</option>
          ))}
        </select>
      </label>
      <label>
        {t("post")}
        {v.role === "liaison" ? (
          <select value={v.post} onChange={set("post")} data-testid="onboard-post">
            <option value="">{t("chooseDepartment")}</option>
            {(departments.data?.departments ?? []).map((d) => (
              <option value={d.code}>{d.name}</option>
            ))}
          </select>
        ) : (
          <input value={v.post} onInput={set("post")} data-testid="onboard-post" placeholder={postHint(v.role)} />
        )}
      </label>
      <Hint show={touched && bad.post} text={postHint(v.role)} testid="onboard-post-hint" />
      {refused && <ProblemNote p={refused.problem} testid="people-error" />}
      <Buttons busy={busy} disabled={touched && invalid} label={t("onboard")} onClose={p.onClose} />
    </Modal>
  );
}

function SuccessorPicker(p: { leaver: PersonEntry; people: PersonEntry[]; value: string; onChange: (id: string) => void; required: boolean }) {
  const options = successorsFor(p.leaver, p.people);
  return (
    <label>
      {t("successor")}
      <select value={p.value} onChange={(e) => p.onChange((e.target as HTMLSelectElement).value)} data-testid="people-successor" required={p.required}>
        <option value="">{p.required ? t("chooseSuccessor") : t("noSuccessor")}</option>
        {options.map((x) => (
          <option value={x.personId}>
            {x.name}（{x.personId}，{roleLabel(x.role)} · {x.postName || x.post}）
          </option>
        ))}
      </select>
      {options.length === 0 && <div class="field-hint" data-testid="people-no-successor">{t("noSuccessorAvailable", { role: roleLabel(p.leaver.role), post: p.leaver.postName || p.leaver.post })}</div>}
    </label>
  );
}

function Holds(p: { refused: Refusal | null; person: PersonEntry; names: Map<string, string> }) {
  if (!p.refused) return null;
  if (!p.refused.holdings) return <ProblemNote p={p.refused.problem} testid="people-error" />;
  return (
    <div class="error" role="alert" data-testid="people-error" data-reason="successor_needed" title={p.refused.problem.detail}>
      {t("holdsIntro", { name: p.person.name })}
      <HoldingsList h={p.refused.holdings} names={p.names} />
      {t("holdsWhatToDo")}
    </div>
  );
}

function ChangeDialog(p: { person: PersonEntry; people: PersonEntry[]; names: Map<string, string>; onClose: () => void; onDone: () => void }) {
  const x = p.person;
  const [v, setV] = useState({ name: x.name, phone: "", role: x.role, post: x.post, successor: "" });
  const { busy, refused, send } = useSender();
  const moved = v.role !== x.role || v.post.trim() !== x.post;
  const bad = {
    name: !v.name.trim() || [...v.name.trim()].length > 64,
    phone: !!v.phone.trim() && !phoneOk(v.phone),
    post: moved && !postOk(v.role, v.post),
  };
  const nothing = v.name.trim() === x.name && !v.phone.trim() && !moved;
  const invalid = bad.name || bad.phone || bad.post || nothing;
  const set = (k: keyof typeof v) => (e: Event) => {
    const value = (e.target as HTMLInputElement).value;
    setV((old) => ({ ...old, [k]: value }));
  };
  const submit = async () => {
    if (invalid) return;
    const ok = await send((commandId) =>
      dispatch.changePerson({
        commandId,
        body: {
          case: "changePerson",
          value: {
            personId: x.personId,
            name: v.name.trim() === x.name ? "" : v.name.trim(),
            phone: v.phone.trim(),
            role: moved ? v.role : "",
            post: moved ? v.post.trim() : "",
            successorId: moved ? v.successor : "",
          },
        },
      }),
    );
    if (ok) p.onDone();
  };
  return (
    <Modal title={t("changeTitle", { name: x.name })} testid="people-change-dialog" onClose={p.onClose} onSubmit={submit}>
      <p class="muted small">{t("changeIntro")}</p>
      <label>
        {t("personName")}
        <input value={v.name} maxLength={64} onInput={set("name")} data-testid="change-name" />
      </label>
      <Hint show={bad.name} text={t("nameHint")} testid="change-name-hint" />
      <label>
        {t("newPhone")}
        <input value={v.phone} inputMode="tel" onInput={set("phone")} data-testid="change-phone" placeholder={x.phoneMasked} />
      </label>
      <Hint show={bad.phone} text={t("phoneHint")} testid="change-phone-hint" />
      <label>
        {t("personRole")}
        <select value={v.role} onChange={set("role")} data-testid="change-role">
          {ROLES.map((r) => (
            <option value={r}>{roleLabel(r)}</option>
          ))}
        </select>
      </label>
      <label>
        {t("post")}
        <input value={v.post} onInput={set("post")} data-testid="change-post" placeholder={postHint(v.role)} />
      </label>
      <Hint show={bad.post} text={postHint(v.role)} testid="change-post-hint" />
      {moved && <SuccessorPicker leaver={x} people={p.people} value={v.successor} onChange={(successor) => setV((old) => ({ ...old, successor }))} required={!!refused?.holdings} />}
      {moved && <p class="muted small">{t("transferNote")}</p>}
      <Holds refused={refused} person={x} names={p.names} />
      <Buttons busy={busy} disabled={invalid} label={t("changePerson")} onClose={p.onClose} />
    </Modal>
  );
}

function OffboardDialog(p: { person: PersonEntry; people: PersonEntry[]; names: Map<string, string>; onClose: () => void; onDone: () => void }) {
  const x = p.person;
  const [successor, setSuccessor] = useState("");
  const { busy, refused, send } = useSender();
  const needed = !!refused?.holdings;
  const submit = async () => {
    if (needed && !successor) return;
    const ok = await send((commandId) => dispatch.offboardPerson({ commandId, body: { case: "offboardPerson", value: { personId: x.personId, successorId: successor } } }));
    if (ok) p.onDone();
  };
  return (
    <Modal title={t("offboardTitle", { name: x.name })} testid="people-offboard-dialog" role="alertdialog" onClose={p.onClose} onSubmit={submit}>
      <p class="muted">{t("offboardIntro", { name: x.name, role: roleLabel(x.role), post: x.postName || x.post })}</p>
      <SuccessorPicker leaver={x} people={p.people} value={successor} onChange={setSuccessor} required={needed} />
      <Holds refused={refused} person={x} names={p.names} />
      <Buttons busy={busy} disabled={needed && !successor} label={t("offboardConfirm")} onClose={p.onClose} />
    </Modal>
  );
}

/**
 * The org import's empty templates (`whistle org import` reads them back; docs/operations.md, "The
 * city's organisation"): the workbook with 填写说明, and the grid boundaries as GeoJSON.
 */
function Templates() {
  const [busy, setBusy] = useState("");
  const [error, setError] = useState("");
  const get = async (path: string, fallback: string) => {
    setBusy(path);
    setError("");
    try {
      await downloadFile(path, fallback);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy("");
    }
  };
  return (
    <div class="people-templates muted small" data-testid="people-templates" title={t("templatesHint")}>
      {t("templates")}：
      <button type="button" class="link" disabled={!!busy} data-testid="template-xlsx" onClick={() => get("/templates/org.xlsx", "组织机构.xlsx")}>
        {t("templateWorkbook")}
      </button>
      <button type="button" class="link" disabled={!!busy} data-testid="template-geojson" onClick={() => get("/templates/grids.geojson", "网格边界.geojson")}>
        {t("templateBoundaries")}
      </button>
      {error && (
        <span class="error" role="alert" data-testid="template-error">
          {t("templateFailed")}：{error}
        </span>
      )}
    </div>
  );
}
