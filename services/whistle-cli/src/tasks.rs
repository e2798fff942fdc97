//! `whistle tasks`: a department's tasks with the time left to report in (报到) or to resolve
//! (办结), read through the query service's `ListTasks` with the person's token (a liaison sees
//! its own department; an operator names one inside its area).

use std::time::Duration;

use chrono::{DateTime, Local, TimeDelta, Utc};
use whistle_proto::v1;
use whistle_store::tasks::{Deadline, DepartmentTask};

use crate::{door, rows, watch::Names, Connection};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Department code, e.g. 150602-heating; default the liaison token's own.
    #[arg(long)]
    department: Option<String>,
    /// Include returned, resolved and cancelled tasks.
    #[arg(long)]
    all: bool,
    /// Keep the list on screen, counting down every second and re-reading it every 5 s, until
    /// Ctrl-C.
    #[arg(long)]
    watch: bool,
}

/// Time left before `deadline` at `now`, or how late it is: `还剩 4分05秒`, `超时 12分钟`.
pub fn countdown(deadline: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let left = deadline - now;
    if left >= TimeDelta::zero() {
        format!("还剩 {}", span(left, true))
    } else {
        format!("超时 {}", span(-left, false))
    }
}

/// A duration the way a workbench shows it: seconds only under a minute; minutes and seconds
/// under an hour when `precise` (time left), whole minutes otherwise (time late).
fn span(d: TimeDelta, precise: bool) -> String {
    let secs = d.num_seconds();
    let (days, hours, minutes, seconds) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    if secs < 60 {
        format!("{secs}秒")
    } else if secs < 3_600 && precise {
        format!("{minutes}分{seconds:02}秒")
    } else if secs < 3_600 {
        format!("{minutes}分钟")
    } else if secs < 86_400 {
        format!("{hours}小时{minutes:02}分")
    } else {
        format!("{days}天{hours}小时")
    }
}

/// The Chinese label of a task status.
pub fn task_status_zh(status: &str) -> &str {
    match status {
        "dispatched" => "待报到",
        "supervised" => "督办中·待报到",
        "accepted" => "已报到·办理中",
        "returned" => "已退单",
        "resolved" => "已办结",
        "cancelled" => "已撤销(改派)",
        other => other,
    }
}

/// The Chinese label of a return reason as stored (snake_case).
pub fn stored_reason_zh(reason: &str) -> &str {
    match reason {
        "not_our_duty" => "非本部门职责",
        "wrong_area" => "不属于本辖区",
        "unclear_ownership" => "权属不清",
        "overlapping_duties" => "职责交叉",
        "insufficient_information" => "信息不全",
        other => other,
    }
}

/// Display width in a terminal: CJK characters take two columns.
pub fn width(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

/// `s` padded with spaces to `columns` display columns.
pub fn pad(s: &str, columns: usize) -> String {
    format!("{s}{}", " ".repeat(columns.saturating_sub(width(s))))
}

fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%m-%d %H:%M:%S")
        .to_string()
}

/// Two lines for a task: the clock and the task, then the incident and its place.
fn task_lines(task: &DepartmentTask, names: &Names, now: DateTime<Utc>) -> String {
    let t = &task.task;
    let clock = match t.deadline() {
        Some(deadline @ Deadline::ReportIn(_)) => format!(
            "{}  报到期限 {}",
            pad(&countdown(deadline.at(), now), 16),
            local(deadline.at())
        ),
        Some(deadline @ Deadline::Resolve(_)) => format!(
            "{}  办结期限 {}",
            pad(&countdown(deadline.at(), now), 16),
            local(deadline.at())
        ),
        None => {
            let when = t.resolved_at.unwrap_or(t.updated_at);
            pad(
                &format!("{}  {}", task_status_zh(&t.status), local(when)),
                42,
            )
        }
    };
    let mut flags = Vec::new();
    if t.deadline().is_some() {
        flags.push(task_status_zh(&t.status).to_owned());
    }
    if t.supervised && t.status != "supervised" {
        flags.push("督办".to_owned());
    }
    if let Some(reason) = &t.return_reason {
        flags.push(format!("退单: {}", stored_reason_zh(reason)));
    }
    if let Some(holder) = &t.holder_id {
        flags.push(format!("报到人 {holder}"));
    }
    if t.round > 0 {
        flags.push(format!("重办第{}轮", t.round));
    }
    if task.overdue {
        flags.push("事件已超期".to_owned());
    }
    let urgency = match task.urgency.as_str() {
        "emergency" => "【紧急】",
        "urgent" => "【较急】",
        _ => "",
    };
    let place = names.place_path(&[
        &task.district_code,
        &task.street_code,
        &task.community_code,
        &task.grid_code,
    ]);
    format!(
        "{clock}  任务 {}  事件 {}  {}\n    {urgency}「{}」 [{}] {place}{}",
        t.task_id,
        task.incident_id,
        flags.join(" · "),
        task.title,
        names.category(&task.category),
        if task.address.is_empty() || task.address == names.place(&task.grid_code) {
            String::new()
        } else {
            format!(" ({})", task.address)
        },
    )
}

/// The whole list as shown.
fn render(
    department: &str,
    tasks: &[DepartmentTask],
    all: bool,
    names: &Names,
    now: DateTime<Utc>,
) -> String {
    let open = tasks.iter().filter(|t| t.task.deadline().is_some()).count();
    let late = tasks
        .iter()
        .filter(|t| t.task.deadline().is_some_and(|d| d.at() < now))
        .count();
    let mut out = format!(
        "{} ({department}) — {open} 个待办任务{}{}  {}\n",
        names.department(department),
        if late > 0 {
            format!(", {late} 个已超时")
        } else {
            String::new()
        },
        if all {
            format!(", 共 {} 个", tasks.len())
        } else {
            String::new()
        },
        now.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
    );
    if tasks.is_empty() {
        out.push_str("  (没有任务)\n");
    }
    for task in tasks {
        out.push_str("  ");
        out.push_str(&task_lines(task, names, now));
        out.push('\n');
    }
    out
}

/// The request: the open tasks (the service's default), or with `all` every status.
fn list_request(department: Option<&str>, all: bool) -> v1::ListTasksRequest {
    let statuses = if all {
        [
            v1::TaskStatus::Dispatched,
            v1::TaskStatus::Supervised,
            v1::TaskStatus::Accepted,
            v1::TaskStatus::Returned,
            v1::TaskStatus::Resolved,
            v1::TaskStatus::Cancelled,
        ]
        .map(|s| s as i32)
        .to_vec()
    } else {
        Vec::new()
    };
    v1::ListTasksRequest {
        department_code: department.unwrap_or_default().to_owned(),
        statuses,
        page_size: 500,
    }
}

pub async fn run(conn: &Connection, args: Args) -> anyhow::Result<()> {
    let mut query = conn.query().await?;
    let names = Names::fetch(&mut query).await?;
    if let Some(department) = args.department.as_deref() {
        if !names.knows_department(department) {
            eprintln!(
                "note: {department} is not a department of the city (codes look like 150602-heating; `whistle org export` lists them)"
            );
        }
    }
    let request = list_request(args.department.as_deref(), args.all);
    let read = || {
        let (mut query, request) = (query.clone(), request.clone());
        async move {
            let response = query
                .list_tasks(request)
                .await
                .map_err(|status| door::grpc_error("ListTasks", status))?
                .into_inner();
            let tasks = response
                .tasks
                .iter()
                .map(rows::department_task)
                .collect::<anyhow::Result<Vec<_>>>()?;
            anyhow::Ok((response.department_code, tasks))
        }
    };
    let (department, mut list) = read().await?;
    if !args.watch {
        print!(
            "{}",
            render(&department, &list, args.all, &names, Utc::now())
        );
        return Ok(());
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_read = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tick.tick() => {}
        }
        if last_read.elapsed() >= Duration::from_secs(5) {
            list = read().await?.1;
            last_read = tokio::time::Instant::now();
        }
        // Clear the screen and draw from the top left.
        print!(
            "\x1b[2J\x1b[H{}",
            render(&department, &list, args.all, &names, Utc::now())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn time_left_is_precise_under_an_hour() {
        assert_eq!(countdown(at(30), at(0)), "还剩 30秒");
        assert_eq!(countdown(at(0), at(0)), "还剩 0秒");
        assert_eq!(countdown(at(245), at(0)), "还剩 4分05秒");
        assert_eq!(countdown(at(3_599), at(0)), "还剩 59分59秒");
        assert_eq!(countdown(at(3_600 + 5 * 60), at(0)), "还剩 1小时05分");
        assert_eq!(
            countdown(at(2 * 86_400 + 3 * 3_600), at(0)),
            "还剩 2天3小时"
        );
    }

    #[test]
    fn lateness_is_in_whole_minutes() {
        assert_eq!(countdown(at(0), at(12 * 60 + 40)), "超时 12分钟");
        assert_eq!(countdown(at(0), at(45)), "超时 45秒");
        assert_eq!(countdown(at(0), at(1)), "超时 1秒");
        assert_eq!(countdown(at(0), at(3 * 3_600 + 7 * 60)), "超时 3小时07分");
        assert_eq!(countdown(at(0), at(86_400 + 3_600)), "超时 1天1小时");
    }

    #[test]
    fn sub_second_differences_round_towards_zero() {
        let now = at(0);
        let deadline = now + TimeDelta::milliseconds(1_500);
        assert_eq!(countdown(deadline, now), "还剩 1秒");
        assert_eq!(countdown(now, deadline), "超时 1秒");
    }

    #[test]
    fn padding_counts_chinese_as_two_columns() {
        assert_eq!(width("超时 12分钟"), 11);
        assert_eq!(pad("还剩 5秒", 10), "还剩 5秒  ");
        assert_eq!(pad("longer than that", 4), "longer than that");
    }

    #[test]
    fn all_asks_for_every_status_and_no_department_means_the_tokens() {
        let open = list_request(None, false);
        assert_eq!(open.department_code, "");
        assert!(open.statuses.is_empty());
        let all = list_request(Some("150602-heating"), true);
        assert_eq!(all.department_code, "150602-heating");
        assert_eq!(all.statuses.len(), 6);
        assert!(!all.statuses.contains(&(v1::TaskStatus::Unspecified as i32)));
    }

    #[test]
    fn statuses_and_reasons_have_chinese_labels() {
        assert_eq!(task_status_zh("supervised"), "督办中·待报到");
        assert_eq!(task_status_zh("odd"), "odd");
        assert_eq!(stored_reason_zh("wrong_area"), "不属于本辖区");
    }
}
