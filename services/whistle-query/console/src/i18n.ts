// Every label of the console in Chinese (default) and English. The choice persists in localStorage.
export type Lang = "zh" | "en";
const LANG_KEY = "whistle.lang";

let lang: Lang = (() => {
  try {
    return localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh";
  } catch {
    return "zh";
  }
})();

export function getLang(): Lang {
  return lang;
}
export function setLang(l: Lang) {
  lang = l;
  localStorage.setItem(LANG_KEY, l);
  document.documentElement.lang = l === "zh" ? "zh-CN" : "en";
}

const D = {
  appTitle: ["智慧党建综合指挥调度平台", "Smart Party-Building Command & Dispatch"],
  city: ["鄂尔多斯市", "Ordos"],
  screen: ["指挥大屏", "Command screen"],
  workbench: ["部门工作台", "Department workbench"],
  report: ["网格上报", "Grid report"],
  signIn: ["登录", "Sign in"],
  signOut: ["退出", "Sign out"],
  notifications: ["消息", "Notifications"],
  notificationsUnread: ["{n} 条未读", "{n} unread"],
  notificationsNone: ["暂无消息", "No notifications"],
  notificationsAllRead: ["全部已读", "Mark all read"],
  notificationsEnable: ["开启桌面提醒", "Turn on desktop alerts"],
  notificationsAsDeputy: ["代理", "As deputy"],
  tokenLabel: ["访问令牌", "Access token"],
  tokenHint: ["粘贴管理员发放的令牌（wst_ 开头）", "Paste the token you were given (starts with wst_)"],
  signInFailed: ["登录失败", "Sign-in failed"],
  sessionExpired: ["登录已失效，请重新登录", "Your session ended; please sign in again"],
  signedInAs: ["当前用户", "Signed in as"],
  switchAccountTitle: ["切换账号？", "Switch account?"],
  switchAccountBody: [
    "此链接带有另一个访问令牌。切换后将以该令牌的身份登录，当前会话结束。如非本人发起，请保持当前登录。",
    "This link carries a different access token. Switching signs you in as that token and ends the current session. If you did not expect this, keep your current session.",
  ],
  switchAccountKeep: ["保持当前登录", "Keep current session"],
  switchAccountSwitch: ["切换账号", "Switch account"],
  language: ["English", "中文"],
  live: ["实时", "Live"],
  reconnecting: ["重连中", "Reconnecting"],
  connecting: ["连接中", "Connecting"],
  loading: ["加载中…", "Loading…"],
  noData: ["暂无数据", "No data"],
  error: ["错误", "Error"],
  close: ["关闭", "Close"],
  cancel: ["取消", "Cancel"],
  confirm: ["确定", "Confirm"],
  refresh: ["刷新", "Refresh"],
  role_operator: ["指挥中心", "Operator"],
  role_viewer: ["观察员", "Viewer"],
  role_liaison: ["部门报到人", "Department liaison"],
  role_grid_worker: ["网格员", "Grid worker"],
  // KPIs
  kpiReported: ["今日上报", "Reported today"],
  kpiOpen: ["处置中", "In progress"],
  kpiResolved: ["今日办结", "Resolved today"],
  kpiOverdue: ["超期", "Overdue"],
  kpiWhistles: ["今日吹哨", "Whistles today"],
  responseRate: ["响应率", "Response rate"],
  resolutionRate: ["解决率", "Resolution rate"],
  satisfactionRate: ["满意率", "Satisfaction rate"],
  rateResponseSub: ["按时签收 {a} / 派单 {b}", "accepted in time {a} / dispatched {b}"],
  rateResolutionSub: ["按时办结 {a} / 到期 {b}", "resolved in time {a} / due {b}"],
  rateSatisfactionSub: ["满意 {a} / 回访 {b}", "satisfied {a} / followed up {b}"],
  last30days: ["近30天", "last 30 days"],
  thisMonth: ["本月", "this month"],
  // Panels
  pCategory: ["事件类别分布", "Incidents by category"],
  pTrend: ["24小时趋势", "24-hour trend"],
  pStreets: ["街道排名（三率）", "Street ranking (three rates)"],
  pDepartments: ["部门排名（三率）", "Department ranking (three rates)"],
  pOverdue: ["超期督办", "Overdue"],
  pTicker: ["实时动态", "Live events"],
  pMap: ["网格事件分布", "Open incidents by grid"],
  pStatus: ["事件状态", "Incidents by status"],
  reported: ["上报", "Reported"],
  resolved: ["办结", "Resolved"],
  open: ["在办", "Open"],
  rank: ["排名", "#"],
  name: ["名称", "Name"],
  score: ["综合得分", "Score"],
  lateBy: ["已超期", "late by"],
  dueIn: ["剩余", "due in"],
  overdueTag: ["超期", "overdue"],
  incidentLevel: ["处置层级", "Level"],
  gridOpen: ["在办事件", "open incidents"],
  mapDistricts: ["旗区", "Districts"],
  mapGrids: ["网格", "Grids"],
  mapSubAreas: ["下级区域", "Sub-areas"],
  mapScaleTitle: ["旗区：处置中事件数", "Districts: open incidents"],
  mapLegendOpen: ["网格：有处置中事件", "Grid with open incidents"],
  mapLegendOverdue: ["网格：有超期事件", "Grid with an overdue one"],
  mapLegendArea: ["下级区域：圈大事件多", "Sub-area: bigger, more"],
  noOverdue: ["当前无超期事项", "Nothing is overdue"],
  waitingEvents: ["等待实时事件…", "Waiting for live events…"],
  allCity: ["全市", "Whole city"],
  chooseSub: ["下级区域", "Sub-area"],
  districtDeptNote: ["（所在旗区）", "(its district)"],
  smallSample: ["样本少", "few cases"],
  smallSampleTitle: ["本月仅 {n} 件，少于 {min} 件，三率仅供参考，排在样本充足者之后", "Only {n} this month, fewer than {min}: the rates mean little, so it ranks after those with enough"],
  // Drawer
  incident: ["事件详情", "Incident"],
  description: ["描述", "Description"],
  category: ["类别", "Category"],
  urgency: ["紧急程度", "Urgency"],
  status: ["状态", "Status"],
  level: ["层级", "Level"],
  place: ["位置", "Place"],
  reportedAt: ["上报时间", "Reported at"],
  dueAt: ["办结时限", "Resolve by"],
  reports: ["上报记录", "Reports"],
  tasks: ["部门任务", "Department tasks"],
  timeline: ["处置时间线", "Timeline"],
  department: ["部门", "Department"],
  acceptDue: ["报到时限", "Report in by"],
  resolveDue: ["办结时限", "Resolve by"],
  supervise: ["督办", "Supervise"],
  superviseIncident: ["督办事件", "Supervise incident"],
  reassign: ["改派", "Reassign"],
  reassignTo: ["改派至部门", "Reassign to department"],
  note: ["备注", "Note"],
  superviseDefault: ["请加快办理", "Please speed this up"],
  done: ["操作成功", "Done"],
  version: ["版本", "Version"],
  gridIncidents: ["网格在办事件", "Open incidents in the grid"],
  supervised: ["已督办", "supervised"],
  // Workbench
  myTasks: ["本部门任务", "Our department's tasks"],
  deptRates: ["本部门本月三率", "Our three rates this month"],
  accept: ["签收", "Accept"],
  return: ["退单", "Return"],
  resolve: ["办结", "Resolve"],
  returnReason: ["退单原因", "Reason"],
  returnNote: ["退单说明（必填）", "Explanation (required)"],
  resolveNote: ["办理情况（必填）", "What was done (required)"],
  noteRequired: ["请填写说明", "Please write a note"],
  noTasks: ["暂无待办任务", "No open tasks"],
  reportInIn: ["报到剩余", "report in within"],
  resolveIn: ["办结剩余", "resolve within"],
  reportInLate: ["报到已超", "report-in late by"],
  resolveLate: ["办结已超", "resolve late by"],
  countOpen: ["待办", "Open"],
  countDispatched: ["待签收", "To accept"],
  countAccepted: ["办理中", "In hand"],
  composite: ["综合得分", "Composite"],
  // Report form
  newReport: ["上报事件", "New report"],
  group: ["大类", "Group"],
  chooseGroup: ["选择大类", "Choose a group"],
  catalogueLoading: ["正在载入事件分类…", "Loading the categories…"],
  queuedTitle: ["已存入待发送", "Saved to send later"],
  queuedBody: ["当前没有网络。联网后将自动发送，每条只发送一次。", "There is no network now. It is sent automatically once the network returns, exactly once."],
  outbox: ["待发送", "Waiting to send"],
  outboxTag: ["待发送", "Not sent yet"],
  outboxDrop: ["删除", "Delete"],
  offlineSession: ["离线：显示的是上次登录时的信息", "Offline: showing the details from the last sign-in"],
  chooseCategory: ["选择小类", "Choose a category"],
  title: ["标题", "Title"],
  titlePh: ["如：XX小区路灯不亮", "e.g. street light out at …"],
  descPh: ["问题的具体情况", "What is the problem"],
  location: ["位置", "Location"],
  address: ["地址", "Address"],
  addressPh: ["门牌、楼栋等", "Building, street number…"],
  useGps: ["定位", "Locate"],
  gpsFromDevice: ["设备定位", "device position"],
  gpsFromGrid: ["网格中心点", "grid centre"],
  gpsNone: ["无坐标", "no coordinates"],
  submit: ["提交上报", "Submit"],
  submitting: ["提交中…", "Submitting…"],
  retry: ["重试", "Retry"],
  myReports: ["我的上报", "My reports"],
  followUp: ["回访", "Follow-up"],
  followUpAsk: ["请记录居民回访意见：", "Record the resident's verdict:"],
  outcome_incident: ["已立案", "Incident opened"],
  outcome_attached: ["已并入已有事件", "Attached to an open incident"],
  outcome_rejected: ["已退回", "Rejected"],
  outcome_pending: ["处理中，稍后在“我的上报”查看", "Pending — see My reports"],
  titleRequired: ["请填写标题并选择类别", "Write a title and choose a category"],
  photos: ["现场照片", "Photos"],
  afterPhotos: ["整改后照片", "After photos"],
  addPhoto: ["拍照", "Take photo"],
  removePhoto: ["删除照片", "Remove photo"],
  photoCompressing: ["压缩中…", "Compressing…"],
  photoRequiredMark: ["（必须）", "(required)"],
  photoRequired: ["该类别须附现场照片，请先拍照", "This category needs a photo: take one first"],
  afterPhotoRequired: ["该类别办结须附整改后照片，请先拍照", "This category needs an after photo: take one first"],
  photoUnreadable: ["无法读取所选图片，请重新拍摄", "The image could not be read; take it again"],
  photoUnavailable: ["照片暂不可用", "Photo unavailable"],
  photosBefore: ["整改前", "Before"],
  photosAfter: ["整改后", "After"],
  photoCount: ["照片 {n} 张", "{n} photos"],
  noReports: ["暂无上报", "No reports yet"],
  grid: ["网格", "Grid"],
  attachedTag: ["重复并入", "attached"],
  rejectedTag: ["已退回", "rejected"],
  pendingTag: ["待受理", "pending"],
  noView: ["“{role}”角色没有可用的页面。请联系管理员。", "There is no view for the role “{role}”. Ask your administrator."],
  // Connection
  updatedAt: ["数据更新于 {time}", "Data as of {time}"],
  health_live: ["实时", "Live"],
  health_connecting: ["连接中", "Connecting"],
  health_reconnecting: ["重连中", "Reconnecting"],
  health_degraded: ["部分数据未更新", "Some data is not updating"],
  health_offline: ["连接中断", "Offline"],
  // Names in place of codes
  someDepartment: ["相关部门", "a department"],
  actorSystem: ["系统（自动）", "System (automatic)"],
  actorStaff: ["工作人员", "staff"],
  actorUnknown: ["工作人员", "Staff"],
  // Dialogs and actions
  chooseDepartment: ["选择部门", "Choose a department"],
  actionGone: ["此操作已不适用（现为：{state}）。", "This action no longer applies (now: {state})."],
  sending: ["提交中…", "Sending…"],
  submitAgain: ["再次{action}", "{action} again"],
  acceptNote: ["签收说明（选填）", "Note (optional)"],
  superviseIntro: ["督办将记入事件时间线，并通知相关部门加快办理。", "Supervision goes on the incident's timeline and tells the department to speed up."],
  superviseNote: ["督办意见（必填）", "Supervision note (required)"],
  reassignNote: ["改派说明（选填）", "Note (optional)"],
  done_accept: ["已签收：{title}", "Accepted: {title}"],
  done_return: ["已退单：{title}", "Returned: {title}"],
  done_resolve: ["已办结：{title}", "Resolved: {title}"],
  done_supervise: ["已督办：{who}", "Supervised: {who}"],
  done_superviseIncident: ["已督办此事件", "The incident is under supervision"],
  done_reassign: ["已改派：{from} → {to}", "Reassigned: {from} → {to}"],
  // Deadline extensions (延期申请)
  request_extension: ["申请延期", "Ask for more time"],
  extensionIntro: ["在办结时限前申请延期，由上级审批；逾期未批复视为不予延期。当前时限：{due}", "Ask before the deadline; the level above answers, and no answer in time counts as a denial. Current deadline: {due}"],
  extensionUntil: ["申请延期至", "New deadline"],
  extensionReason: ["延期理由（必填）", "Reason (required)"],
  done_request_extension: ["已申请延期：{title}", "Extension requested: {title}"],
  extensionPending: ["延期申请：延至 {until}，{approver}审批，{due} 前答复", "Extension asked: to {until}, answered by the {approver} before {due}"],
  extensionApprove: ["同意延期", "Approve"],
  extensionDeny: ["不予延期", "Deny"],
  extensionApproveNote: ["审批意见（选填）", "Note (optional)"],
  extensionDenyNote: ["不予延期的理由（必填）", "Why not (required)"],
  done_extensionApprove: ["已同意延期", "Extension approved"],
  done_extensionDeny: ["已不予延期", "Extension denied"],
  extensionsGranted: ["已延期 {n} 次", "Extended {n} time(s)"],
  // Workbench list
  deadline: ["时限", "Deadline"],
  reportIn: ["报到", "report in"],
  resolveBy: ["办结", "resolve"],
  newTasks: ["{n} 条新任务", "{n} new task(s)"],
  listChanged: ["列表有更新", "The list has changed"],
  showNow: ["立即显示", "show now"],
  taskOut: ["已移出", "Moved off"],
  search: ["搜索", "Search"],
  searchPh: ["搜索标题、描述、位置", "Search title, description, place"],
  allStatuses: ["全部状态", "All statuses"],
  allCategories: ["全部类别", "All categories"],
  anyDeadline: ["全部时限", "Any deadline"],
  dueSoon: ["1小时内到期", "Due within the hour"],
  deptLate: ["部门超时", "Departments late"],
  residentContact: ["居民电话", "Resident's phone"],
  overdueDefinition: ["超期：在办事件已过办结时限（与“超期”指标同一口径，每个事件计一次）", "Overdue: open incidents past their resolve deadline (as the Overdue tile counts them, each once)"],
} as const;

export type Key = keyof typeof D;

export function t(key: Key, vars?: Record<string, string | number>): string {
  let s: string = D[key][lang === "zh" ? 0 : 1];
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, String(v));
  return s;
}

type Pair = readonly [string, string];
const pick = (p: Pair | undefined, fallback: string) => (p ? p[lang === "zh" ? 0 : 1] : fallback);

const INCIDENT_STATUS: Record<number, Pair> = {
  0: ["未知", "unknown"],
  1: ["已上报", "Reported"],
  2: ["本级办理", "Handled at its level"],
  3: ["已吹哨", "Whistled"],
  4: ["已报到", "Reported in"],
  5: ["已办结待回访", "Resolved"],
  6: ["已结案", "Closed"],
  7: ["未回访结案", "Closed unverified"],
  8: ["重复件", "Duplicate"],
};
const TASK_STATUS: Record<number, Pair> = {
  0: ["未知", "unknown"],
  1: ["待签收", "Dispatched"],
  2: ["已签收", "Accepted"],
  3: ["已退单", "Returned"],
  4: ["已办结", "Resolved"],
  5: ["督办中", "Supervised"],
  6: ["已撤回", "Cancelled"],
};
const LEVEL: Record<number, Pair> = {
  0: ["未知", "unknown"],
  1: ["网格", "Grid"],
  2: ["社区", "Community"],
  3: ["街道", "Street"],
  4: ["旗区", "District"],
  5: ["市级", "City"],
};
const URGENCY: Record<number, Pair> = {
  0: ["一般", "Normal"],
  1: ["一般", "Normal"],
  2: ["较急", "Urgent"],
  3: ["紧急", "Emergency"],
};
export const RETURN_REASON: Record<number, Pair> = {
  1: ["非本部门职责", "Not our duty"],
  2: ["不属于本辖区", "Wrong area"],
  3: ["权属不清", "Unclear ownership"],
  4: ["职责交叉", "Overlapping duties"],
  5: ["信息不全", "Insufficient information"],
};
const SATISFACTION: Record<number, Pair> = {
  0: ["未回访", "not followed up"],
  1: ["满意", "Satisfied"],
  2: ["基本满意", "Basically satisfied"],
  3: ["不满意", "Unsatisfied"],
};
const EVENT_KIND: Record<string, Pair> = {
  "incident.reported": ["新事件", "New incident"],
  "report.attached": ["重复上报并入", "Duplicate attached"],
  "report.rejected": ["上报被退回", "Report rejected"],
  "cluster.alert": ["群体性事件预警", "Cluster alert"],
  "incident.escalated": ["上报上级", "Escalated"],
  "incident.whistled": ["街道吹哨", "Whistle blown"],
  "task.dispatched": ["派单", "Task dispatched"],
  "task.accepted": ["部门报到", "Department reported in"],
  "task.returned": ["部门退单", "Task returned"],
  "task.reassigned": ["改派", "Task reassigned"],
  "task.supervised": ["督办", "Task supervised"],
  "task.reminded": ["催办", "Reminder"],
  "task.resolved": ["部门办结", "Task resolved"],
  "incident.resolved": ["办结", "Resolved"],
  "incident.verified": ["回访", "Followed up"],
  "incident.reopened": ["重办", "Reopened"],
  "incident.closed": ["结案", "Closed"],
  "incident.closed_unverified": ["未回访结案", "Closed unverified"],
  "incident.overdue": ["超期", "Overdue"],
  "incident.supervised": ["事件督办", "Incident supervised"],
  "incident.commented": ["备注", "Comment"],
  "incident.rescheduled": ["时限重算", "Deadline recounted"],
  "incident.extension_requested": ["延期申请", "Extension requested"],
  "incident.extension_approved": ["同意延期", "Extension approved"],
  "incident.extension_denied": ["不予延期", "Extension denied"],
  "incident.extension_withdrawn": ["延期申请撤回", "Extension withdrawn"],
  "incident.handling": ["受理", "Taken up"],
  "notification.delivered": ["消息已送达", "Notification delivered"],
  "notification.failed": ["消息未送达", "Notification not delivered"],
  "notification.escalated": ["转告代理人", "Deputy told"],
};
const OUTCOME_REASON: Record<string, Pair> = {};

export const incidentStatusLabel = (s: number) => pick(INCIDENT_STATUS[s], String(s));
export const taskStatusLabel = (s: number) => pick(TASK_STATUS[s], String(s));
export const levelLabel = (s: number) => pick(LEVEL[s], String(s));
export const urgencyLabel = (s: number) => pick(URGENCY[s], String(s));
export const returnReasonLabel = (s: number) => pick(RETURN_REASON[s], String(s));
export const satisfactionLabel = (s: number) => pick(SATISFACTION[s], String(s));
export const eventKindLabel = (k: string) => pick(EVENT_KIND[k], k);
export const rejectReasonLabel = (k: string) => pick(OUTCOME_REASON[k], k);
export const roleLabel = (r: string) => {
  const k = `role_${r}` as Key;
  return k in D ? t(k) : r;
};
