import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./styles.css";
import { cc, getToken, setToken, clearToken, onUnauthenticated } from "./api";
import { describe } from "./errors";
import { t, getLang, setLang, roleLabel, type Lang } from "./i18n";
import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { SessionSchema, type Session } from "./gen/whistle/v1/command_center_pb.js";
import { Screen } from "./screen";
import { Workbench } from "./workbench";
import { ReportForm } from "./report";
import { Bell } from "./notifications";
import { People } from "./people";
import { Topics } from "./topics";
import { Offers } from "./offers";
import { Paired } from "./paired";

export type View = "screen" | "workbench" | "report" | "people" | "topics" | "offers" | "paired";

// The last GetSession answer for the signed-in token, beside it in sessionStorage: a page reloaded
// without a network (the report form in the field) still knows whose it is and opens its view.
const SESSION_KEY = "whistle.session";
function rememberSession(s: Session | null) {
  try {
    if (s) sessionStorage.setItem(SESSION_KEY, toJsonString(SessionSchema, s));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // storage disabled: no offline reload
  }
}
function rememberedSession(): Session | null {
  try {
    const saved = sessionStorage.getItem(SESSION_KEY);
    return saved ? fromJsonString(SessionSchema, saved) : null;
  } catch {
    return null;
  }
}

/** The views each role may open, the first one being its home. */
export function viewsFor(role: string): View[] {
  switch (role) {
    // 人员管理 and 每月一题 (adopting a topic) are the operators' alone (the RPCs refuse every
    // other token).
    case "operator":
      return ["screen", "topics", "people"];
    case "viewer":
      return ["screen"];
    case "liaison":
      return ["workbench"];
    case "grid_worker":
      return ["report"];
    // A Party member's phone page (党员接单) and a paired leader's view (领导结对联系): their
    // tokens reach these pages' RPCs and nothing else.
    case "member":
      return ["offers"];
    case "leader":
      return ["paired"];
    default:
      return [];
  }
}

interface Route {
  view: string;
  token?: string;
}
function parseHash(): Route {
  const h = location.hash.replace(/^#\/?/, "");
  const [path, query] = h.split("?");
  const params = new URLSearchParams(query ?? "");
  return { view: path || "", token: params.get("token") ?? undefined };
}

function App() {
  const [lang, setLangState] = useState<Lang>(getLang());
  const [route, setRoute] = useState<Route>(parseHash());
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(true);
  const [message, setMessage] = useState<{ text: string; detail: string } | null>(null);

  // A link's token (#/screen?token=wst_…) taken while another token is signed in: asked about first.
  const [linkToken, setLinkToken] = useState<string | null>(null);

  // A token in the URL fragment (#/screen?token=wst_…) is stripped from the address bar at once. It
  // signs in when nobody is signed in; it never silently replaces another signed-in token (a link
  // sent by someone else would otherwise switch the screen to their identity): the user is asked.
  useEffect(() => {
    const takeToken = (): boolean => {
      const r = parseHash();
      if (!r.token) return false;
      history.replaceState(null, "", `${location.pathname}${location.search}#/${r.view}`);
      setRoute({ view: r.view });
      const current = getToken();
      if (current && current !== r.token.trim()) {
        setLinkToken(r.token.trim());
        return false;
      }
      setToken(r.token);
      return true;
    };
    takeToken();
    const onHash = () => {
      if (takeToken()) void checkSession();
      else setRoute(parseHash());
    };
    addEventListener("hashchange", onHash);
    const off = onUnauthenticated((msg) => {
      clearToken();
      rememberSession(null);
      setSession(null);
      setMessage({ text: t("sessionExpired"), detail: msg });
      location.hash = "#/signin";
    });
    void checkSession();
    return () => {
      removeEventListener("hashchange", onHash);
      off();
    };
  }, []);

  const acceptLinkToken = () => {
    if (!linkToken) return;
    setToken(linkToken);
    setLinkToken(null);
    setSession(null);
    void checkSession();
  };

  async function checkSession() {
    if (!getToken()) {
      setChecking(false);
      return;
    }
    setChecking(true);
    try {
      const s = await cc.getSession({});
      rememberSession(s);
      setSession(s);
      setMessage(null);
    } catch (e) {
      const p = describe(e);
      const saved = p.kind === "network" ? rememberedSession() : null;
      if (saved) {
        setSession(saved);
        setMessage(null);
      } else {
        setSession(null);
        setMessage({ text: `${t("signInFailed")}：${p.text}`, detail: p.detail });
      }
    } finally {
      setChecking(false);
    }
  }

  const switchLang = () => {
    const l = lang === "zh" ? "en" : "zh";
    setLang(l);
    setLangState(l);
  };
  const signOut = () => {
    clearToken();
    rememberSession(null);
    setSession(null);
    setMessage(null);
    location.hash = "#/signin";
  };

  if (checking) return <div class="splash">{t("loading")}</div>;

  if (linkToken) {
    return <SwitchAccount session={session} onAccept={acceptLinkToken} onDecline={() => setLinkToken(null)} />;
  }

  if (!session) {
    return (
      <SignIn
        message={message}
        onToken={async (tok) => {
          setToken(tok);
          await checkSession();
        }}
        onLang={switchLang}
      />
    );
  }

  const views = viewsFor(session.role);
  let view = route.view as View;
  if (!views.includes(view)) {
    view = views[0];
    if (view && location.hash !== `#/${view}`) history.replaceState(null, "", `#/${view}`);
  }
  const chrome = { session, views, view, onLang: switchLang, onSignOut: signOut, lang };
  if (view === "screen") return <Screen key={lang} {...chrome} />;
  if (view === "workbench") return <Workbench key={lang} {...chrome} />;
  if (view === "people") return <People key={lang} {...chrome} />;
  if (view === "topics") return <Topics key={lang} {...chrome} />;
  if (view === "offers") return <Offers key={lang} {...chrome} />;
  if (view === "paired") return <Paired key={lang} {...chrome} />;
  if (view === "report") {
    installForOffline();
    return <ReportForm key={lang} {...chrome} />;
  }
  return (
    <div class="signin">
      <div class="signin-box">
        <p>
          {t("noView", { role: roleLabel(session.role) })}
        </p>
        <button onClick={signOut}>{t("signOut")}</button>
      </div>
    </div>
  );
}

export interface Chrome {
  session: Session;
  views: View[];
  view: View;
  lang: Lang;
  onLang: () => void;
  onSignOut: () => void;
}

/** The nav and user menu shared by the views: only the views the role may open. */
export function NavLinks(p: Chrome) {
  return (
    <nav class="nav" data-testid="nav">
      {p.views.length > 1 &&
        p.views.map((v) => (
          <a href={`#/${v}`} class={v === p.view ? "active" : ""} data-testid={`nav-${v}`}>
            {t(v)}
          </a>
        ))}
      {/* A member's token has no notifications to read (ListNotifications refuses it). */}
      {p.session.personId && p.session.role !== "member" && <Bell />}
      <span class="who" data-testid="who" data-role={p.session.role}>
        {roleLabel(p.session.role)} · {p.session.personName || p.session.departmentName || p.session.areaName}
      </span>
      <button class="link" onClick={p.onLang} data-testid="lang-switch">
        {t("language")}
      </button>
      <button class="link" onClick={p.onSignOut} data-testid="sign-out">
        {t("signOut")}
      </button>
    </nav>
  );
}

/** Asks before a link's token replaces the signed-in one; declining keeps the current session. */
function SwitchAccount(p: { session: Session | null; onAccept: () => void; onDecline: () => void }) {
  const who = p.session ? `${roleLabel(p.session.role)} · ${p.session.personName || p.session.departmentName || p.session.areaName}` : "";
  return (
    <div class="modal-backdrop">
      <div class="modal" role="alertdialog" aria-modal="true" aria-labelledby="switch-title" data-testid="switch-account-dialog">
        <h3 id="switch-title">{t("switchAccountTitle")}</h3>
        <p>{t("switchAccountBody")}</p>
        {who && (
          <p class="muted" data-testid="switch-account-current">
            {t("signedInAs")}: {who}
          </p>
        )}
        <div class="row">
          <button type="button" class="primary" onClick={p.onDecline} data-testid="switch-account-keep">
            {t("switchAccountKeep")}
          </button>
          <button type="button" onClick={p.onAccept} data-testid="switch-account-switch">
            {t("switchAccountSwitch")}
          </button>
        </div>
      </div>
    </div>
  );
}

function SignIn(p: { message: { text: string; detail: string } | null; onToken: (t: string) => Promise<void>; onLang: () => void }) {
  const [tok, setTok] = useState("");
  const [busy, setBusy] = useState(false);
  return (
    <div class="signin">
      <form
        class="signin-box"
        data-testid="signin"
        onSubmit={async (e) => {
          e.preventDefault();
          if (!tok.trim()) return;
          setBusy(true);
          await p.onToken(tok.trim());
          setBusy(false);
        }}
      >
        <div class="signin-title">
          <div class="emblem">哨</div>
          <div>
            <h1>
              {t("city")} · {t("appTitle")}
            </h1>
            <p class="muted">{t("tokenHint")}</p>
          </div>
        </div>
        <label>
          {t("tokenLabel")}
          <input
            type="password"
            autoComplete="off"
            value={tok}
            onInput={(e) => setTok((e.target as HTMLInputElement).value)}
            placeholder="wst_…"
            data-testid="token-input"
          />
        </label>
        {p.message && (
          <div class="error" role="alert" data-testid="signin-error" title={p.message.detail}>
            {p.message.text}
          </div>
        )}
        <div class="row">
          <button type="submit" class="primary" disabled={busy} data-testid="signin-submit">
            {t("signIn")}
          </button>
          <button type="button" class="link" onClick={p.onLang} data-testid="lang-switch">
            {t("language")}
          </button>
        </div>
      </form>
    </div>
  );
}

/**
 * The report form works offline: its service worker (sw.js) keeps the page and the release's files.
 * Registered once the form is opened (the screens need no offline copy); browsers allow it on
 * HTTPS and on localhost only.
 */
let installed = false;
function installForOffline() {
  if (installed || !("serviceWorker" in navigator)) return;
  installed = true;
  navigator.serviceWorker.register("sw.js").catch(() => {
    installed = false;
  });
}

setLang(getLang());
render(<App />, document.getElementById("app")!);
