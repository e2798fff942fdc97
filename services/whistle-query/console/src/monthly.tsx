// The monthly assessment report (月度考核通报) as a download: the month (the last complete one by
// default) and XLSX or PDF, for the screen's area, from the query service's /reports/monthly with
// the console's token (docs/report.md). The department board covers the city or a district, so a
// street or smaller downloads its district's report.
import { useState } from "preact/hooks";
import { downloadFile } from "./api";
import { t } from "./i18n";

/** `YYYY-MM` of the month before the current one (local time: the screen is in Ordos). */
function lastMonth(): string {
  const d = new Date();
  d.setDate(1);
  d.setMonth(d.getMonth() - 1);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

/** The area the report covers: the city or a district (the first six digits of any code below). */
export function reportArea(area: string): string {
  return area.length > 6 ? area.slice(0, 6) : area;
}

function download(month: string, area: string, format: "xlsx" | "pdf") {
  const query = new URLSearchParams({ month, area: reportArea(area), format });
  return downloadFile(`/reports/monthly?${query}`, `whistle-monthly.${format}`);
}

export function MonthlyReport({ area }: { area: string }) {
  const [month, setMonth] = useState(lastMonth());
  const [busy, setBusy] = useState<"" | "xlsx" | "pdf">("");
  const [error, setError] = useState("");
  const get = async (format: "xlsx" | "pdf") => {
    setBusy(format);
    setError("");
    try {
      await download(month, area, format);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy("");
    }
  };
  return (
    <div class="monthly" data-testid="monthly-report" title={t("monthlyReportHint")}>
      <span class="monthly-label">{t("monthlyReport")}</span>
      <input
        type="month"
        data-testid="monthly-month"
        aria-label={t("monthlyReportMonth")}
        value={month}
        onInput={(e) => setMonth((e.target as HTMLInputElement).value)}
      />
      <button type="button" data-testid="monthly-xlsx" disabled={!!busy || !month} onClick={() => get("xlsx")}>
        {busy === "xlsx" ? "…" : "XLSX"}
      </button>
      <button type="button" data-testid="monthly-pdf" disabled={!!busy || !month} onClick={() => get("pdf")}>
        {busy === "pdf" ? "…" : "PDF"}
      </button>
      {error && (
        <span class="monthly-error" role="alert" data-testid="monthly-error">
          {error}
        </span>
      )}
    </div>
  );
}
