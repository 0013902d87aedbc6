// The agent console (served at /console/): sign in, the live queue, a conversation with its hand-off brief,
// accept / reply / give back to the assistant / close, knowledge search. Role-aware: supervisors and admins also
// see every held conversation. Text is always rendered with textContent.

import {
  Api,
  ApiError,
  Conversation,
  EVENT_NAMES,
  IMAGE_TYPES,
  Message,
  ReadSignal,
  StreamEvent,
  TypingSignal,
  imageElement,
  imageId,
  uploadImage,
} from "./api";
import { h, richText } from "./dom";

const T = {
  zh: {
    title: "kefu 客服工作台",
    tenant: "租户",
    email: "邮箱",
    password: "密码",
    login: "登录",
    logout: "退出",
    queue: "排队中",
    mine: "我的会话",
    held: "全部进行中",
    empty: "暂无会话",
    pick: "从左侧选择一个会话",
    accept: "接入",
    release: "转回 AI",
    close: "结束会话",
    reply: "回复",
    replyPlaceholder: "输入回复，Enter 发送",
    brief: "转接简报",
    summary: "摘要",
    reason: "转人工原因",
    intent: "意图",
    emotions: "情绪轨迹",
    attempts: "AI 的尝试",
    profile: "客户资料",
    orders: "近期订单",
    suggested: "建议回复",
    useSuggestion: "填入回复框",
    ticket: "工单草稿",
    priority: "优先级",
    kb: "知识库搜索",
    kbPlaceholder: "搜索知识库…",
    search: "搜索",
    noHits: "没有找到相关内容",
    waiting: "等待",
    minutes: "分钟",
    heldBy: "处理人",
    you: "你",
    customer: "客户",
    bot: "AI",
    agent: "客服",
    rating: "评分",
    statusQueued: "排队中",
    statusAgent: "人工处理中",
    statusBot: "AI 处理中",
    statusClosed: "已结束",
    heldByOther: "该会话已被其他客服接入",
    customerTyping: "客户正在输入…",
    readMark: "已读",
    anonymous: "匿名访客",
    lang: "English",
    agents: "客服在线情况",
    online: "在线",
    offline: "离线",
    holding: "处理中",
    tickets: "工单",
    settings: "设置",
    createTicket: "创建工单",
    ticketCreated: "已创建工单",
    notes: "备注与回复",
    addNote: "添加",
    internal: "仅内部可见",
    notePlaceholder: "写备注或给客户的回复…",
    dueResponse: "首次响应截止",
    dueResolution: "解决截止",
    breached: "已超时",
    paused: "计时暂停（等待客户）",
    to: "改为",
    hours: "人工客服工作时间",
    offset: "UTC 偏移",
    save: "保存",
    saved: "已保存",
    days: ["周一", "周二", "周三", "周四", "周五", "周六", "周日"],
    knowledge: "知识库",
    importFiles: "导入文件",
    collection: "分类",
    imported: "导入结果",
    deleteDoc: "删除文档",
    confirmDelete: "确定删除这个文档吗？",
    newFaq: "新增 / 修改问答",
    question: "问题",
    answer: "答案",
    alternatives: "相似问题（每行一个）",
    chunks: "片段",
    hoursHint: "格式 09:00-18:00，留空表示休息；全部留空并保存则不限时间",
    pageHours: "工作时间",
    pageHandoff: "转人工与分配",
    pageTeams: "技能组",
    pageWords: "敏感词",
    pageAgents: "客服与技能组",
    pageModels: "模型",
    assignment: "分配方式",
    manual: "手动接入",
    leastLoaded: "最少会话优先",
    roundRobin: "轮流分配",
    capacity: "每人最多会话数",
    handoffIntents: "必须转人工的意图",
    handoffKeywords: "必须转人工的关键词",
    vipTiers: "优先人工的会员等级",
    streak: "连续负面几次后转人工",
    listHint: "多个值用逗号或换行分隔",
    teamName: "名称",
    keywords: "关键词",
    intents: "意图",
    tiers: "会员等级",
    languages: "语言",
    addTeam: "添加技能组",
    remove: "删除",
    teamsHint: "转人工时按顺序匹配第一个符合的技能组，都不符合则进入通用队列。",
    role: "角色",
    teamsOf: "技能组",
    allTeams: "全部队列",
    myTeams: "我的技能组",
    general: "通用队列",
    transferTo: "转给技能组",
    transfer: "转接",
    words: "敏感词列表",
    wordsHint: "每行一个：词 或 词<Tab>分类<Tab>动作（block 拦截 / mask 打码 / flag 记录）。忽略大小写、全半角、繁简体和夹杂的符号。",
    defaultAction: "默认动作",
    entries: "条",
    active: "生效总数（含服务器列表）",
    tryText: "试一试",
    check: "检测",
    verdict: "结果",
    none: "无",
    source: "当前来源",
    sources: { tenant: "本租户的设置", default: "服务器默认", none: "未配置" } as Record<string, string>,
    providers: "模型服务",
    baseUrl: "Base URL",
    apiKey: "API Key",
    chain: "调用顺序（失败时依次降级）",
    cheapChain: "简单问题用的低价模型（可留空）",
    currency: "币种",
    prices: "每百万 token 价格：输入 / 输出",
    provider: "服务",
    model: "模型",
    temperature: "温度",
    maxTokens: "最大输出 token",
    persona: "人设（系统提示词）",
    add: "添加",
    useDefault: "恢复服务器默认",
    keepKey: "留空或 *** 表示保留原 Key",
  },
  en: {
    title: "kefu agent console",
    tenant: "Tenant",
    email: "Email",
    password: "Password",
    login: "Sign in",
    logout: "Sign out",
    queue: "Queue",
    mine: "Mine",
    held: "All held",
    empty: "Nothing here",
    pick: "Pick a conversation on the left",
    accept: "Accept",
    release: "Give back to AI",
    close: "Close",
    reply: "Send",
    replyPlaceholder: "Type a reply, Enter to send",
    brief: "Hand-off brief",
    summary: "Summary",
    reason: "Why handed off",
    intent: "Intent",
    emotions: "Emotion",
    attempts: "What the AI tried",
    profile: "Customer",
    orders: "Recent orders",
    suggested: "Suggested reply",
    useSuggestion: "Use it",
    ticket: "Ticket draft",
    priority: "Priority",
    kb: "Knowledge search",
    kbPlaceholder: "Search the knowledge base…",
    search: "Search",
    noHits: "No matches",
    waiting: "waiting",
    minutes: "min",
    heldBy: "Held by",
    you: "you",
    customer: "Customer",
    bot: "AI",
    agent: "Agent",
    rating: "Rating",
    statusQueued: "Queued",
    statusAgent: "With an agent",
    statusBot: "With the AI",
    statusClosed: "Closed",
    heldByOther: "Another agent has taken this conversation",
    customerTyping: "The customer is typing…",
    readMark: "Read",
    anonymous: "Anonymous visitor",
    lang: "中文",
    agents: "Agents",
    online: "online",
    offline: "offline",
    holding: "holding",
    tickets: "Tickets",
    settings: "Settings",
    createTicket: "Create ticket",
    ticketCreated: "Ticket created",
    notes: "Notes and replies",
    addNote: "Add",
    internal: "Internal only",
    notePlaceholder: "Write a note or a reply to the customer…",
    dueResponse: "First response due",
    dueResolution: "Resolution due",
    breached: "breached",
    paused: "clock paused (waiting for the customer)",
    to: "Set",
    hours: "Business hours",
    offset: "UTC offset",
    save: "Save",
    saved: "Saved",
    days: ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    knowledge: "Knowledge",
    importFiles: "Import files",
    collection: "Collection",
    imported: "Import report",
    deleteDoc: "Delete document",
    confirmDelete: "Delete this document?",
    newFaq: "Add / edit an FAQ entry",
    question: "Question",
    answer: "Answer",
    alternatives: "Other phrasings (one per line)",
    chunks: "Chunks",
    hoursHint: "Format 09:00-18:00, empty = closed; all empty and saved = always open",
    pageHours: "Business hours",
    pageHandoff: "Hand-off & assignment",
    pageTeams: "Teams",
    pageWords: "Sensitive words",
    pageAgents: "Agents & teams",
    pageModels: "Models",
    assignment: "Assignment",
    manual: "Agents accept",
    leastLoaded: "Least loaded",
    roundRobin: "Round robin",
    capacity: "Conversations per agent",
    handoffIntents: "Intents that go to people",
    handoffKeywords: "Words that go to people",
    vipTiers: "Tiers served by people first",
    streak: "Hand off after negative turns",
    listHint: "Separate values with commas or new lines",
    teamName: "Name",
    keywords: "Words",
    intents: "Intents",
    tiers: "Tiers",
    languages: "Languages",
    addTeam: "Add team",
    remove: "Remove",
    teamsHint: "A hand-off goes to the first team whose rule matches, else to the general queue.",
    role: "Role",
    teamsOf: "Teams",
    allTeams: "All queues",
    myTeams: "My teams",
    general: "General queue",
    transferTo: "To team",
    transfer: "Transfer",
    words: "Sensitive words",
    wordsHint: "One per line: word, or word<Tab>category<Tab>action (block / mask / flag). Case, full/half width, traditional/simplified Chinese and symbols in between are ignored.",
    defaultAction: "Default action",
    entries: "entries",
    active: "In force (with the server's list)",
    tryText: "Try a text",
    check: "Check",
    verdict: "Result",
    none: "none",
    source: "In use",
    sources: { tenant: "this tenant's own", default: "the server's default", none: "none set" } as Record<string, string>,
    providers: "Providers",
    baseUrl: "Base URL",
    apiKey: "API key",
    chain: "Chain (next one on failure)",
    cheapChain: "Cheap chain for simple questions (optional)",
    currency: "Currency",
    prices: "Price per million tokens: input / output",
    provider: "Provider",
    model: "Model",
    temperature: "Temperature",
    maxTokens: "Max tokens",
    persona: "Persona (system prompt)",
    add: "Add",
    useDefault: "Use the server default",
    keepKey: "Empty or *** keeps the stored key",
  },
};
type Lang = keyof typeof T;

interface Customer {
  id: string;
  external_id: string | null;
  display_name: string | null;
  anonymous: boolean;
}
interface DeskRow {
  conversation: Conversation;
  customer: Customer;
  last_customer_message: string | null;
  handoff_reason: string | null;
}
interface Brief {
  conversation: Conversation;
  customer: Customer;
  language: string;
  handoff_reason: string | null;
  summary: string;
  intent: string | null;
  emotions: { seq: number; polarity: string; intensity: number; emotion: string | null }[];
  attempts: { seq: number; question: string; path: string; reason: string; answer: string; confidence: number; unsure: boolean; sources: string[] }[];
  profile: Record<string, unknown> | null;
  recent_orders: unknown;
  suggested_reply: string;
  ticket: { subject: string; priority: string; category: string | null; description: string };
}
interface Hit {
  text: string;
  citation: { label: string };
}

type View = "queue" | "mine" | "held" | "tickets" | "knowledge" | "settings";
type SettingsPage = "hours" | "handoff" | "teams" | "words" | "agents" | "models";

interface TeamRule {
  name: string;
  intents: string[];
  keywords: string[];
  tiers: string[];
  languages: string[];
}
interface DeskConfig {
  business_hours?: { utc_offset: string; days: Record<string, string> } | null;
  assignment?: string | null;
  agent_capacity?: number | null;
  handoff?: { intents: string[]; keywords: string[]; vip_tiers: string[]; negative_streak?: number | null };
  teams?: TeamRule[];
}
interface ChainEntry {
  provider: string;
  model: string;
  input_price?: number | null;
  output_price?: number | null;
}
interface ModelConfig {
  providers: { name: string; base_url: string; api_key: string | null }[];
  chain: ChainEntry[];
  cheap_chain?: ChainEntry[];
  currency?: string | null;
  temperature: number | null;
  max_tokens: number | null;
  system_prompt: string | null;
}

/** A comma- or line-separated list, trimmed, without empties. */
function splitList(v: string): string[] {
  return v
    .split(/[,，\n]/)
    .map((x) => x.trim())
    .filter(Boolean);
}

interface KbDocument {
  id: string;
  collection: string;
  source: string;
  title: string;
  format: string;
  chunk_count: number;
}
interface KbChunk {
  ord: number;
  headings: string[];
  text: string;
  faq: { question: string; alternatives: string[]; answer: string } | null;
}

interface Ticket {
  id: string;
  number: number;
  conversation_id: string | null;
  subject: string;
  description: string;
  department: string | null;
  priority: string;
  status: "open" | "pending" | "resolved" | "closed";
  source: string;
  external_ref: string | null;
  created_at: string;
  sla: {
    first_response_due_at: string;
    resolution_due_at: string;
    first_response_breached: boolean;
    resolution_breached: boolean;
    paused: boolean;
  } | null;
}
interface TicketNote {
  body: string;
  internal: boolean;
  created_at: string;
}

/** The moves the ticket workflow allows from each status. */
const NEXT: Record<Ticket["status"], Ticket["status"][]> = {
  open: ["pending", "resolved"],
  pending: ["open", "resolved"],
  resolved: ["open", "closed"],
  closed: [],
};

class Console {
  private lang: Lang = (localStorage.getItem("kefu-console-lang") as Lang) || (navigator.language.startsWith("zh") ? "zh" : "en");
  private api = new Api(location.origin, sessionStorage.getItem("kefu-console-token"));
  private me: { id: string; role: string; tenant: string } | null = null;
  private view: View = "queue";
  private settingsPage: SettingsPage = "hours";
  private teamFilter = localStorage.getItem("kefu-console-team") ?? "all";
  private teams: { teams: string[]; mine: string[] } = { teams: [], mine: [] };
  private selected: string | null = null;
  private source: EventSource | null = null;
  private poll: number | undefined;
  private beat: number | undefined;
  /** Counts what the console has been asked to show (a view, a ticket, a document, a settings page). A request made
   *  for one of them draws nothing if the agent has moved on by the time it returns: a slow queue poll must not fill
   *  the knowledge view's list. */
  private shown = 0;
  private app = h("div", { id: "app" });

  /** Moves on to something new to show; the returned check stays true until the console moves on again. */
  private moveOn(): () => boolean {
    this.shown++;
    return this.showing();
  }

  /** Stays true while the console still shows what it shows now. */
  private showing(): () => boolean {
    const at = this.shown;
    return () => at === this.shown;
  }

  private get t() {
    return T[this.lang];
  }

  start() {
    document.body.append(this.app);
    this.claims();
    if (this.me) this.main();
    else this.login();
  }

  /** The signed-in staff member, from the token's claims (the server checks the token on every call). */
  private claims() {
    const tok = this.api.token;
    this.me = null;
    if (!tok) return;
    try {
      const c = JSON.parse(atob(tok.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      if (c.exp * 1000 < Date.now()) return;
      this.me = { id: c.sub, role: c.role, tenant: c.tid };
    } catch {
      this.me = null;
    }
  }

  private login(error?: string) {
    clearInterval(this.poll);
    clearInterval(this.beat);
    const tenant = h("input", { name: "tenant", value: localStorage.getItem("kefu-console-tenant") ?? "demo", required: true });
    const email = h("input", { name: "email", type: "email", autocomplete: "username", required: true });
    const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
    const form = h(
      "form",
      { class: "login" },
      h("h1", {}, this.t.title),
      h("label", {}, this.t.tenant, tenant),
      h("label", {}, this.t.email, email),
      h("label", {}, this.t.password, password),
      error ? h("p", { class: "error", role: "alert" }, error) : null,
      h("button", { type: "submit" }, this.t.login),
      this.langButton(),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const r = await new Api(location.origin).call<{ access_token: string }>("POST", "/v1/auth/login", {
          tenant: tenant.value.trim(),
          email: email.value.trim(),
          password: password.value,
        });
        localStorage.setItem("kefu-console-tenant", tenant.value.trim());
        sessionStorage.setItem("kefu-console-token", r.access_token);
        this.api.token = r.access_token;
        this.claims();
        this.main();
      } catch (err) {
        this.login((err as Error).message);
      }
    });
    this.app.replaceChildren(form);
  }

  private langButton() {
    const b = h("button", { type: "button", class: "link", "data-kefu": "lang" }, this.t.lang);
    b.addEventListener("click", () => {
      this.lang = this.lang === "zh" ? "en" : "zh";
      localStorage.setItem("kefu-console-lang", this.lang);
      if (this.me) this.main();
      else this.login();
    });
    return b;
  }

  private list = h("ul", { class: "list", "data-kefu": "list" });
  private center = h("section", { class: "center" });
  private side = h("aside", { class: "side" });

  private main() {
    // Presence: while the console is open the agent is online; a minute of silence and the conversations they
    // hold go back to the queue.
    clearInterval(this.beat);
    this.moveOn();
    const beat = () => this.api.call("POST", "/v1/desk/heartbeat").catch(() => undefined);
    beat();
    this.beat = window.setInterval(beat, 20000);
    const tabs = h("nav", { class: "tabs" });
    const views: View[] =
      this.me && this.me.role !== "agent"
        ? ["queue", "mine", "held", "tickets", "knowledge", "settings"]
        : ["queue", "mine", "tickets", "knowledge"];
    for (const v of views) {
      const b = h("button", { type: "button", class: v === this.view ? "on" : "", "data-view": v }, this.t[v]);
      b.addEventListener("click", () => {
        this.view = v;
        this.main();
      });
      tabs.append(b);
    }
    const logout = h("button", { type: "button", class: "link" }, this.t.logout);
    logout.addEventListener("click", () => {
      sessionStorage.removeItem("kefu-console-token");
      this.api.token = null;
      this.me = null;
      this.source?.close();
      this.login();
    });
    const header = h("header", {}, h("b", {}, this.t.title), h("span", { class: "role" }, this.me?.role ?? ""), this.langButton(), logout);
    this.app.replaceChildren(header, h("main", {}, h("div", { class: "left" }, tabs, this.list), this.center, this.side));
    clearInterval(this.poll);
    if (this.view === "tickets") {
      this.tickets();
      return;
    }
    if (this.view === "settings") {
      this.settings();
      return;
    }
    if (this.view === "knowledge") {
      this.knowledge();
      return;
    }
    this.loadTeams();
    this.refresh();
    // The queue is polled every few seconds; the open conversation itself is live over its event stream.
    this.poll = window.setInterval(() => this.refresh(), 3000);
    if (this.selected) this.open(this.selected);
    else this.center.replaceChildren(h("p", { class: "muted" }, this.t.pick));
  }

  private async guard<T>(p: Promise<T>): Promise<T | undefined> {
    try {
      return await p;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.code === "token_expired")) {
        sessionStorage.removeItem("kefu-console-token");
        this.api.token = null;
        this.me = null;
        this.login(e.message);
        return undefined;
      }
      this.toast(e instanceof ApiError && e.code === "held_by_another_agent" ? this.t.heldByOther : (e as Error).message);
      return undefined;
    }
  }

  private toast(text: string) {
    const el = h("div", { class: "toast", role: "alert" }, text);
    document.body.append(el);
    setTimeout(() => el.remove(), 4000);
  }

  /** The desk's teams (for the queue filter and transfers), once per visit to the desk. */
  private async loadTeams() {
    const still = this.showing();
    const r = await this.guard(this.api.call<{ teams: string[]; mine: string[] }>("GET", "/v1/desk/teams"));
    if (!r || !still()) return;
    this.teams = r;
    if (this.teamFilter !== "all" && this.teamFilter !== "mine" && this.teamFilter !== "general" && !r.teams.includes(this.teamFilter))
      this.teamFilter = "all";
    const left = this.app.querySelector(".left");
    left?.querySelector(".team-filter")?.remove();
    if (!r.teams.length || !left) return;
    const sel = h("select", { class: "team-filter", "data-kefu": "team-filter" });
    const opts: [string, string][] = [
      ["all", this.t.allTeams],
      ...(r.mine.length ? ([["mine", this.t.myTeams]] as [string, string][]) : []),
      ["general", this.t.general],
      ...r.teams.map((t) => [t, t] as [string, string]),
    ];
    for (const [v, label] of opts) sel.append(h("option", { value: v, selected: v === this.teamFilter }, label));
    sel.addEventListener("change", () => {
      this.teamFilter = sel.value;
      localStorage.setItem("kefu-console-team", sel.value);
      this.refresh();
    });
    this.list.before(sel);
    if (this.conv) this.setConv(this.conv);
  }

  private async refresh() {
    if (this.view === "tickets" || this.view === "settings" || this.view === "knowledge") return;
    const team = this.teamFilter === "all" ? "" : `&team=${encodeURIComponent(this.teamFilter)}`;
    const still = this.showing();
    const r = await this.guard(this.api.call<{ conversations: DeskRow[] }>("GET", `/v1/desk/conversations?view=${this.view}${team}`));
    if (!r || !still()) return;
    const items = r.conversations.map((row) => {
      const c = row.conversation;
      const who = row.customer.display_name || row.customer.external_id || this.t.anonymous;
      const waited = c.queued_at ? Math.max(0, Math.round((Date.now() - Date.parse(c.queued_at)) / 60000)) : null;
      const li = h(
        "li",
        { class: c.id === this.selected ? "on" : "", "data-conversation": c.id },
        h("b", {}, who),
        c.team ? h("span", { class: "team", "data-kefu": "team" }, c.team) : null,
        waited !== null && c.handler === "queued" ? h("span", { class: "wait" }, `${this.t.waiting} ${waited} ${this.t.minutes}`) : null,
        h("small", {}, row.last_customer_message ?? ""),
        row.handoff_reason ? h("em", {}, row.handoff_reason) : null,
      );
      li.addEventListener("click", () => this.open(c.id));
      return li;
    });
    this.list.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, this.t.empty)]));
    if (this.view === "held") this.presence();
  }

  /** Supervisors: who is online, how many conversations each holds, their teams. */
  private async presence() {
    const still = this.showing();
    const r = await this.guard(
      this.api.call<{ agents: { id: string; display_name: string | null; online: boolean; held: number; teams: string[] }[] }>("GET", "/v1/desk/agents"),
    );
    if (!r || !still()) return;
    const left = this.app.querySelector(".left");
    left?.querySelector(".presence")?.remove();
    left?.append(
      h(
        "div",
        { class: "presence", "data-kefu": "presence" },
        h("h3", {}, this.t.agents),
        ...r.agents.map((a) =>
          h(
            "div",
            { class: a.online ? "on" : "" },
            `${a.online ? "●" : "○"} ${a.display_name ?? a.id.slice(0, 8)} · ${a.online ? this.t.online : this.t.offline} · ${this.t.holding} ${a.held}${a.teams.length ? " · " + a.teams.join(", ") : ""}`,
          ),
        ),
      ),
    );
  }

  private thread = h("div", { class: "thread", "data-kefu": "thread" });
  private bySeq = new Map<number, HTMLElement>();
  private streaming = new Map<number, { el: HTMLElement; text: string }>();
  private conv: Conversation | null = null;
  /** Unsent replies by conversation: switching conversations keeps each one's draft with it. */
  private drafts = new Map<string, string>();
  private actions = h("div", { class: "actions" });
  private replyBox = h("textarea", { rows: "3", "data-kefu": "reply" });
  private statusLine = h("div", { class: "status", "data-kefu": "status" });
  private typingEl = h("div", { class: "typing", "data-kefu": "typing" });
  private typingTimer: number | undefined;
  private typingSignal = new TypingSignal(this.api, () => (this.mine() ? this.selected : null));
  private readSignal = new ReadSignal(this.api, () => (this.mine() ? this.selected : null));

  private mine(): boolean {
    return !!this.conv && this.conv.handler === "agent" && this.conv.assignee_id === this.me?.id && this.conv.id === this.selected;
  }

  private async open(id: string) {
    if (this.selected !== id) {
      if (this.selected && this.replyBox.value) this.drafts.set(this.selected, this.replyBox.value);
      else if (this.selected) this.drafts.delete(this.selected);
      this.replyBox.value = this.drafts.get(id) ?? "";
      this.drafts.delete(id);
    }
    this.selected = id;
    // Until this conversation has loaded, nothing may be sent to the one shown before it.
    this.conv = null;
    this.list.querySelectorAll("li").forEach((li) => li.classList.toggle("on", li.dataset.conversation === id));
    this.source?.close();
    this.bySeq.clear();
    this.streaming.clear();
    this.thread.replaceChildren();
    this.replyBox.placeholder = this.t.replyPlaceholder;
    const file = h("input", { type: "file", accept: IMAGE_TYPES, "data-kefu": "file", hidden: true });
    const attach = h("button", { type: "button", "data-kefu": "attach", title: "image" }, "+");
    attach.addEventListener("click", () => file.click());
    file.addEventListener("change", async () => {
      const f = file.files?.[0];
      file.value = "";
      if (f && this.conv?.id === id) await this.guard(uploadImage(this.api, id, f));
    });
    const form = h("form", { class: "reply" }, attach, file, this.replyBox, h("button", { type: "submit", "data-kefu": "send" }, this.t.reply));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
    this.replyBox.oninput = () => this.typingSignal.keystroke();
    this.readSignal.reset();
    this.typingEl.textContent = "";
    this.replyBox.onkeydown = (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.send();
      }
    };
    this.center.replaceChildren(this.statusLine, this.actions, this.thread, this.typingEl, form);
    const still = this.showing();
    const conv = await this.guard(this.api.call<Conversation>("GET", `/v1/conversations/${id}`));
    // Another conversation, or another view, was opened while this one loaded: it owns the pane now.
    if (!conv || this.selected !== id || !still()) return;
    this.setConv(conv);
    const src = this.api.events(id, 0);
    this.source = src;
    for (const name of EVENT_NAMES) {
      src.addEventListener(name, (ev) => this.onEvent(JSON.parse((ev as MessageEvent).data) as StreamEvent));
    }
    this.loadBrief(id);
  }

  /** Shows an answer about a conversation only while it is still the open one: one arriving after the agent
   *  opened another must not take over the status line and the actions. */
  private adopt(c: Conversation | null | undefined) {
    if (c && c.id === this.selected) this.setConv(c);
  }

  private setConv(c: Conversation) {
    this.conv = c;
    const mine = c.handler === "agent" && c.assignee_id === this.me?.id;
    const status =
      c.status === "closed" ? this.t.statusClosed : c.handler === "queued" ? this.t.statusQueued : c.handler === "agent" ? this.t.statusAgent : this.t.statusBot;
    const held = c.handler === "agent" && c.assignee_id ? ` · ${this.t.heldBy}: ${mine ? this.t.you : c.assignee_id.slice(0, 8)}` : "";
    const rating = c.rating ? ` · ${this.t.rating}: ${"★".repeat(c.rating)}${c.rating_comment ? " “" + c.rating_comment + "”" : ""}` : "";
    this.statusLine.textContent = status + held + rating;
    this.statusLine.dataset.handler = c.handler;
    this.statusLine.dataset.status = c.status;
    const buttons: HTMLElement[] = [];
    const add = (label: string, key: string, fn: () => Promise<unknown>) => {
      const b = h("button", { type: "button", "data-kefu": key }, label);
      b.addEventListener("click", async () => {
        const r = await this.guard(fn());
        this.adopt(r as Conversation | undefined);
        this.refresh();
      });
      buttons.push(b);
    };
    if (c.status === "open" && !mine) add(this.t.accept, "accept", () => this.api.call("POST", `/v1/conversations/${c.id}/accept`));
    if (c.status === "open" && (mine || (c.handler === "agent" && this.me?.role !== "agent")))
      add(this.t.release, "release", () => this.api.call("POST", `/v1/conversations/${c.id}/release`));
    if (c.status === "open") add(this.t.close, "close", () => this.api.call("POST", `/v1/conversations/${c.id}/close`));
    // To a team's queue: the holder, or a supervisor for a queued or held one.
    const supervisor = this.me?.role !== "agent";
    if (this.teams.teams.length && c.status === "open" && (mine || (supervisor && c.handler !== "bot"))) {
      const sel = h("select", { "data-kefu": "transfer-team", "aria-label": this.t.transferTo });
      sel.append(h("option", { value: "" }, this.t.general));
      for (const t of this.teams.teams) sel.append(h("option", { value: t, selected: t === c.team }, t));
      const go = h("button", { type: "button", "data-kefu": "transfer" }, this.t.transfer);
      go.addEventListener("click", async () => {
        const r = await this.guard(this.api.call<Conversation>("POST", `/v1/conversations/${c.id}/transfer`, { team: sel.value }));
        this.adopt(r);
        this.refresh();
      });
      buttons.push(h("span", { class: "transfer" }, sel, go));
    }
    this.actions.replaceChildren(...buttons);
    this.replyBox.disabled = !mine || c.status !== "open";
  }

  private onEvent(e: StreamEvent) {
    switch (e.type) {
      case "message.created": {
        const m = e.message;
        if (this.bySeq.has(m.seq)) return;
        let el: HTMLElement;
        const s = m.reply_to_seq !== null ? this.streaming.get(m.reply_to_seq) : undefined;
        if (m.role === "assistant" && s) {
          el = s.el;
          this.streaming.delete(m.reply_to_seq!);
          el.querySelector(".text")!.replaceChildren(richText(m.content));
        } else {
          el = this.line(m.role, m.content);
        }
        el.dataset.seq = String(m.seq);
        this.bySeq.set(m.seq, el);
        if (m.role === "customer") {
          this.typingEl.textContent = "";
          this.readSignal.seen(m.seq);
        }
        break;
      }
      case "conversation.typing":
        if (e.role === "customer") {
          this.typingEl.textContent = e.typing ? this.t.customerTyping : "";
          clearTimeout(this.typingTimer);
          if (e.typing) this.typingTimer = window.setTimeout(() => (this.typingEl.textContent = ""), 8000);
        }
        break;
      case "conversation.read":
        if (e.role === "customer") {
          for (const [seq, el] of this.bySeq) {
            if (seq <= e.seq && el.dataset.role === "agent" && !el.querySelector(".readmark")) {
              el.append(h("span", { class: "readmark", "data-kefu": "read" }, this.t.readMark));
            }
          }
        }
        break;
      case "message.delta": {
        let s = this.streaming.get(e.reply_to_seq);
        if (!s) {
          s = { el: this.line("assistant", ""), text: "" };
          this.streaming.set(e.reply_to_seq, s);
        }
        if (e.offset === s.text.length) s.text += e.text;
        s.el.querySelector(".text")!.textContent = s.text;
        break;
      }
      case "message.reset": {
        const s = this.streaming.get(e.reply_to_seq);
        if (s) {
          s.text = "";
          s.el.querySelector(".text")!.textContent = "";
        }
        break;
      }
      case "conversation.handler_changed":
      case "conversation.status_changed":
      case "conversation.rated":
        if (this.conv) {
          this.guard(this.api.call<Conversation>("GET", `/v1/conversations/${this.conv.id}`)).then((c) => this.adopt(c));
        }
        this.line("system", e.type === "conversation.handler_changed" ? `→ ${e.handler} (${e.reason})` : e.type === "conversation.rated" ? `★ ${e.rating}` : `→ ${e.status}`);
        break;
      case "conversation.flagged":
        this.line("system", `⚑ ${e.reason}`);
        break;
    }
    this.thread.scrollTop = this.thread.scrollHeight;
  }

  private line(role: Message["role"], text: string): HTMLElement {
    const who = role === "customer" ? this.t.customer : role === "assistant" ? this.t.bot : role === "agent" ? this.t.agent : "";
    const image = imageId(text);
    const body = image ? imageElement(this.api, image) : richText(text);
    const el = h("div", { class: `line ${role}`, "data-role": role }, who ? h("span", { class: "who" }, who) : null, h("div", { class: "text" }, body));
    this.thread.append(el);
    return el;
  }

  private async send() {
    const text = this.replyBox.value.trim();
    // Not yet loaded (or another conversation is being opened): the text stays in the box.
    if (!text || !this.conv || this.conv.id !== this.selected) return;
    const key = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
    this.typingSignal.stop();
    const ok = await this.guard(this.api.call("POST", `/v1/conversations/${this.conv.id}/agent-messages`, { content: text }, { "Idempotency-Key": key }));
    if (ok) this.replyBox.value = "";
  }

  private async loadBrief(id: string) {
    const still = this.showing();
    const b = await this.guard(this.api.call<Brief>("GET", `/v1/conversations/${id}/brief`));
    if (!b || this.selected !== id || !still()) return;
    const dl = (pairs: [string, Node | string | null][]) =>
      h("dl", {}, ...pairs.filter(([, v]) => v !== null && v !== "").flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v as Node | string)]));
    const use = h("button", { type: "button", class: "link", "data-kefu": "use-suggestion" }, this.t.useSuggestion);
    use.addEventListener("click", () => {
      this.replyBox.value = b.suggested_reply;
      this.replyBox.focus();
    });
    const create = h("button", { type: "button", class: "link", "data-kefu": "create-ticket" }, this.t.createTicket);
    create.addEventListener("click", async () => {
      const t = await this.guard(
        this.api.call<Ticket>("POST", "/v1/tickets", {
          subject: b.ticket.subject,
          description: b.ticket.description,
          priority: b.ticket.priority,
          conversation_id: b.conversation.id,
        }),
      );
      if (t) this.toast(`${this.t.ticketCreated} #${t.number}`);
    });
    const attempts = h(
      "ol",
      { class: "attempts" },
      ...b.attempts.map((a) =>
        h(
          "li",
          {},
          h("b", {}, `${a.path}`),
          ` (${a.reason}, ${a.confidence.toFixed(2)}${a.unsure ? ", unsure" : ""}) `,
          h("q", {}, a.question),
          a.sources.length ? h("small", {}, a.sources.join(" · ")) : null,
        ),
      ),
    );
    const profile = b.profile ? h("pre", {}, JSON.stringify(b.profile, null, 1)) : null;
    const orders = b.recent_orders ? h("pre", { class: "orders" }, summariseOrders(b.recent_orders, this.lang)) : null;
    const brief = h(
      "div",
      { class: "brief", "data-kefu": "brief" },
      h("h2", {}, this.t.brief),
      dl([
        [this.t.summary, h("span", { "data-kefu": "summary" }, b.summary)],
        [this.t.reason, b.handoff_reason],
        [this.t.intent, b.intent],
        [this.t.emotions, b.emotions.map((e) => e.emotion ?? e.polarity).join(" → ")],
        [this.t.profile, profile],
        [this.t.orders, orders],
      ]),
      h("h3", {}, this.t.attempts),
      attempts,
      h("h3", {}, this.t.suggested, " ", use),
      h("p", { class: "suggested", "data-kefu": "suggested" }, b.suggested_reply),
      h("h3", {}, this.t.ticket, " ", create),
      dl([
        ["#", b.ticket.subject],
        [this.t.priority, b.ticket.priority],
      ]),
    );
    this.side.replaceChildren(brief, this.kbSearch());
  }

  private async tickets(selected?: string) {
    const still = this.moveOn();
    const r = await this.guard(this.api.call<{ tickets: Ticket[] }>("GET", "/v1/tickets?limit=100"));
    if (!r || !still()) return;
    const items = r.tickets.map((t) => {
      const late = t.sla && (t.sla.first_response_breached || t.sla.resolution_breached);
      const li = h(
        "li",
        { class: t.id === selected ? "on" : "", "data-ticket": t.id },
        h("b", {}, `#${t.number} ${t.subject}`),
        h("small", {}, `${t.status} · ${t.priority}${t.department ? " · " + t.department : ""}`),
        late ? h("span", { class: "wait" }, this.t.breached) : null,
      );
      li.addEventListener("click", () => this.tickets(t.id));
      return li;
    });
    this.list.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, this.t.empty)]));
    this.side.replaceChildren();
    if (selected) this.ticketDetail(selected);
    else this.center.replaceChildren(h("p", { class: "muted" }, this.t.pick));
  }

  private async ticketDetail(id: string) {
    const still = this.showing();
    const d = await this.guard(this.api.call<{ ticket: Ticket; notes: TicketNote[] }>("GET", `/v1/tickets/${id}`));
    if (!d || !still()) return;
    const t = d.ticket;
    const when = (s: string) => new Date(s).toLocaleString(this.lang === "zh" ? "zh-CN" : "en-GB");
    const moves = NEXT[t.status].map((to) => {
      const b = h("button", { type: "button", "data-status": to }, `${this.t.to} ${to}`);
      b.addEventListener("click", async () => {
        if (await this.guard(this.api.call("PATCH", `/v1/tickets/${id}`, { status: to }))) this.tickets(id);
      });
      return b;
    });
    const sla = t.sla
      ? h(
          "dl",
          {},
          h("dt", {}, this.t.dueResponse),
          h("dd", {}, when(t.sla.first_response_due_at), t.sla.first_response_breached ? h("b", { class: "late" }, ` ${this.t.breached}`) : null),
          h("dt", {}, this.t.dueResolution),
          h("dd", {}, when(t.sla.resolution_due_at), t.sla.resolution_breached ? h("b", { class: "late" }, ` ${this.t.breached}`) : null),
          t.sla.paused ? h("dd", {}, this.t.paused) : null,
        )
      : null;
    const body = h("textarea", { rows: "3", placeholder: this.t.notePlaceholder, "data-kefu": "note" });
    const internal = h("input", { type: "checkbox", checked: true });
    const add = h("button", { type: "submit" }, this.t.addNote);
    const form = h("form", { class: "reply" }, body, h("label", {}, internal, this.t.internal), add);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!body.value.trim()) return;
      const ok = await this.guard(this.api.call("POST", `/v1/tickets/${id}/notes`, { body: body.value, internal: internal.checked }));
      if (ok) this.ticketDetail(id);
    });
    const notes = d.notes.map((n) =>
      h("div", { class: `line ${n.internal ? "system" : "agent"}` }, h("span", { class: "who" }, `${when(n.created_at)}${n.internal ? " · " + this.t.internal : ""}`), h("div", { class: "text" }, n.body)),
    );
    this.center.replaceChildren(
      h("div", { class: "status", "data-kefu": "ticket-status", "data-status": t.status }, `#${t.number} ${t.subject} · ${t.status} · ${t.priority}`),
      h("div", { class: "actions" }, ...moves),
      h(
        "div",
        { class: "thread" },
        h("pre", { class: "desc" }, t.description),
        t.external_ref ? h("p", {}, `ref: ${t.external_ref}`) : null,
        sla,
        h("h3", {}, this.t.notes),
        ...notes,
      ),
      form,
    );
  }

  /** Knowledge base: browse documents and their chunks; supervisors and admins import files, delete documents and
   *  add or edit single FAQ entries (each kept as a small FAQ document, so re-saving replaces it). */
  private async knowledge(selected?: string) {
    const still = this.moveOn();
    const docs = await this.guard(this.api.call<KbDocument[]>("GET", "/v1/admin/kb/documents?limit=200"));
    if (!docs || !still()) return;
    const items = docs.map((d) => {
      const li = h(
        "li",
        { class: d.id === selected ? "on" : "", "data-document": d.id },
        h("b", {}, d.title || d.source),
        h("small", {}, `${d.collection} · ${d.format} · ${d.chunk_count} ${this.t.chunks}`),
      );
      li.addEventListener("click", () => this.knowledge(d.id));
      return li;
    });
    this.list.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, this.t.empty)]));
    const manage = this.me?.role !== "agent";
    this.side.replaceChildren(this.kbSearch(), ...(manage ? [this.kbImport(), this.faqForm()] : []));
    if (!selected) {
      this.center.replaceChildren(h("p", { class: "muted" }, this.t.pick));
      return;
    }
    const d = await this.guard(this.api.call<{ document: KbDocument; chunks: KbChunk[] }>("GET", `/v1/admin/kb/documents/${selected}`));
    if (!d || !still()) return;
    const del = h("button", { type: "button", "data-kefu": "delete-doc" }, this.t.deleteDoc);
    del.addEventListener("click", async () => {
      if (!confirm(this.t.confirmDelete)) return;
      if ((await this.guard(this.api.call("DELETE", `/v1/admin/kb/documents/${selected}`))) !== undefined) this.knowledge();
    });
    const chunks = d.chunks.map((c) =>
      c.faq
        ? h("div", { class: "line agent" }, h("span", { class: "who" }, `Q: ${c.faq.question}`), h("div", { class: "text" }, c.faq.answer))
        : h("div", { class: "line customer" }, h("span", { class: "who" }, c.headings.join(" › ")), h("div", { class: "text" }, c.text)),
    );
    this.center.replaceChildren(
      h("div", { class: "status" }, `${d.document.title} · ${d.document.source}`),
      h("div", { class: "actions" }, ...(manage ? [del] : [])),
      h("div", { class: "thread", "data-kefu": "chunks" }, ...chunks),
    );
  }

  private kbImport() {
    const files = h("input", { type: "file", multiple: true, "data-kefu": "kb-files" });
    const collection = h("input", { value: "help", "data-kefu": "kb-collection" });
    const out = h("pre", { "data-kefu": "kb-report" });
    const form = h("form", { class: "kb" }, h("h2", {}, this.t.importFiles), h("label", {}, this.t.collection, collection), files, h("button", { type: "submit" }, this.t.importFiles), out);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const list = [...(files.files ?? [])];
      if (!list.length) return;
      const payload = await Promise.all(
        list.map(async (f) => ({ source: f.name, content_base64: await toBase64(f) })),
      );
      const r = await this.guard(
        this.api.call<{ files?: { source: string; status: string; chunks: number; error?: string | null }[] }>("POST", "/v1/admin/kb/imports", {
          collection: collection.value.trim() || "default",
          files: payload,
        }),
      );
      if (!r) return;
      out.textContent = (r.files ?? []).map((f) => `${f.source}: ${f.status} (${f.chunks})${f.error ? " " + f.error : ""}`).join("\n") || "…";
      this.knowledge();
    });
    return form;
  }

  private faqForm() {
    const q = h("input", { "data-kefu": "faq-question" });
    const a = h("textarea", { rows: "3", "data-kefu": "faq-answer" });
    const alt = h("textarea", { rows: "2", "data-kefu": "faq-alternatives" });
    const form = h(
      "form",
      { class: "kb" },
      h("h2", {}, this.t.newFaq),
      h("label", {}, this.t.question, q),
      h("label", {}, this.t.answer, a),
      h("label", {}, this.t.alternatives, alt),
      h("button", { type: "submit" }, this.t.save),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!q.value.trim() || !a.value.trim()) return;
      const entry = {
        question: q.value.trim(),
        answer: a.value.trim(),
        alternatives: alt.value.split("\n").map((x) => x.trim()).filter(Boolean),
      };
      // One document per question, named by it: saving the same question again replaces it.
      const name = entry.question.replace(/[\\/:*?"<>|\s]+/g, " ").trim().slice(0, 80) || (await digest(entry.question));
      const source = `console/faq/${name}.json`;
      const ok = await this.guard(
        this.api.call("POST", "/v1/admin/kb/imports", {
          collection: "help",
          files: [{ source, content: JSON.stringify([entry]), format: "faq_json" }],
        }),
      );
      if (ok) {
        this.toast(this.t.saved);
        this.knowledge();
      }
    });
    return form;
  }

  private async settings() {
    const still = this.moveOn();
    this.side.replaceChildren();
    const admin = this.me?.role === "admin";
    const pages: SettingsPage[] = ["hours", "handoff", "teams", "words", ...(admin ? (["agents", "models"] as SettingsPage[]) : [])];
    if (!pages.includes(this.settingsPage)) this.settingsPage = "hours";
    const label: Record<SettingsPage, string> = {
      hours: this.t.pageHours,
      handoff: this.t.pageHandoff,
      teams: this.t.pageTeams,
      words: this.t.pageWords,
      agents: this.t.pageAgents,
      models: this.t.pageModels,
    };
    this.list.replaceChildren(
      ...pages.map((p) => {
        const li = h("li", { class: p === this.settingsPage ? "on" : "", "data-page": p }, h("b", {}, label[p]));
        li.addEventListener("click", () => {
          this.settingsPage = p;
          this.settings();
        });
        return li;
      }),
    );
    const page = this.settingsPage;
    if (page === "words") return this.wordsPage();
    if (page === "agents") return this.agentsPage();
    if (page === "models") return this.modelsPage();
    const cfg = await this.guard(this.api.call<DeskConfig>("GET", "/v1/admin/desk-config"));
    if (!cfg || !still()) return;
    if (page === "hours") this.hoursPage(cfg);
    else if (page === "handoff") this.handoffPage(cfg);
    else this.teamsPage(cfg);
  }

  /** Saves the whole desk configuration (the API replaces it): each page changes its part of what it read. */
  private async saveDesk(cfg: DeskConfig) {
    if (await this.guard(this.api.call("PUT", "/v1/admin/desk-config", cfg))) this.toast(this.t.saved);
  }

  private settingsForm(title: string, hint: string | null, ...fields: (Node | null)[]) {
    const form = h("form", { class: "settings", "data-kefu": "settings-form" }, h("h2", {}, title), hint ? h("p", { class: "muted" }, hint) : null, ...fields);
    this.center.replaceChildren(form);
    return form;
  }

  private hoursPage(cfg: DeskConfig) {
    const keys = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    const offset = h("input", { value: cfg.business_hours?.utc_offset ?? "+08:00", "data-kefu": "offset" });
    const inputs = keys.map((k) => h("input", { value: cfg.business_hours?.days?.[k] ?? "", placeholder: "09:00-18:00", "data-day": k }));
    const form = this.settingsForm(
      this.t.hours,
      this.t.hoursHint,
      h("label", {}, this.t.offset, offset),
      ...keys.map((_, i) => h("label", {}, this.t.days[i], inputs[i])),
      h("button", { type: "submit" }, this.t.save),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const days: Record<string, string> = {};
      keys.forEach((k, i) => {
        if (inputs[i].value.trim()) days[k] = inputs[i].value.trim();
      });
      const any = Object.keys(days).length > 0;
      this.saveDesk({ ...cfg, business_hours: any ? { utc_offset: offset.value.trim(), days } : null });
    });
  }

  private handoffPage(cfg: DeskConfig) {
    const mode = h("select", { "data-kefu": "assignment" });
    for (const [v, l] of [
      ["manual", this.t.manual],
      ["least_loaded", this.t.leastLoaded],
      ["round_robin", this.t.roundRobin],
    ])
      mode.append(h("option", { value: v, selected: (cfg.assignment ?? "manual") === v }, l));
    const capacity = h("input", { type: "number", min: "1", max: "100", value: String(cfg.agent_capacity ?? 5), "data-kefu": "capacity" });
    const rules = cfg.handoff ?? { intents: [], keywords: [], vip_tiers: [] };
    const area = (v: string[], key: string) => h("textarea", { rows: "2", "data-kefu": key }, v.join("\n"));
    const intents = area(rules.intents, "handoff-intents");
    const keywords = area(rules.keywords, "handoff-keywords");
    const tiers = area(rules.vip_tiers, "vip-tiers");
    const streak = h("input", { type: "number", min: "1", max: "20", value: rules.negative_streak ? String(rules.negative_streak) : "", placeholder: "3", "data-kefu": "streak" });
    const form = this.settingsForm(
      this.t.pageHandoff,
      this.t.listHint,
      h("label", {}, this.t.assignment, mode),
      h("label", {}, this.t.capacity, capacity),
      h("label", {}, this.t.handoffIntents, intents),
      h("label", {}, this.t.handoffKeywords, keywords),
      h("label", {}, this.t.vipTiers, tiers),
      h("label", {}, this.t.streak, streak),
      h("button", { type: "submit" }, this.t.save),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.saveDesk({
        ...cfg,
        assignment: mode.value,
        agent_capacity: Number(capacity.value) || null,
        handoff: {
          intents: splitList(intents.value),
          keywords: splitList(keywords.value),
          vip_tiers: splitList(tiers.value),
          negative_streak: Number(streak.value) || null,
        },
      });
    });
  }

  private teamsPage(cfg: DeskConfig) {
    const rows: { el: HTMLElement; read: () => TeamRule }[] = [];
    const box = h("div", { class: "teams" });
    const addRow = (t: TeamRule) => {
      const name = h("input", { value: t.name, required: true, maxlength: "40", "data-kefu": "team-name" });
      const field = (v: string[], key: string) => h("input", { value: v.join(", "), "data-kefu": key });
      const keywords = field(t.keywords, "team-keywords");
      const intents = field(t.intents, "team-intents");
      const tiers = field(t.tiers, "team-tiers");
      const languages = field(t.languages, "team-languages");
      const remove = h("button", { type: "button", class: "link" }, this.t.remove);
      const el = h(
        "fieldset",
        { class: "team-rule" },
        h("label", {}, this.t.teamName, name),
        h("label", {}, this.t.keywords, keywords),
        h("label", {}, this.t.intents, intents),
        h("label", {}, this.t.tiers, tiers),
        h("label", {}, this.t.languages, languages),
        remove,
      );
      const row = {
        el,
        read: (): TeamRule => ({
          name: name.value.trim(),
          keywords: splitList(keywords.value),
          intents: splitList(intents.value),
          tiers: splitList(tiers.value),
          languages: splitList(languages.value),
        }),
      };
      remove.addEventListener("click", () => {
        rows.splice(rows.indexOf(row), 1);
        el.remove();
      });
      rows.push(row);
      box.append(el);
    };
    for (const t of cfg.teams ?? []) addRow(t);
    const add = h("button", { type: "button", "data-kefu": "add-team" }, this.t.addTeam);
    add.addEventListener("click", () => addRow({ name: "", keywords: [], intents: [], tiers: [], languages: [] }));
    const form = this.settingsForm(this.t.pageTeams, `${this.t.teamsHint} ${this.t.listHint}`, box, add, h("button", { type: "submit" }, this.t.save));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.saveDesk({ ...cfg, teams: rows.map((r) => r.read()) });
    });
  }

  private async agentsPage() {
    const still = this.showing();
    const [users, cfg] = await Promise.all([
      this.guard(this.api.call<{ id: string; email: string; display_name: string | null; role: string; teams: string[] }[]>("GET", "/v1/admin/users")),
      this.guard(this.api.call<DeskConfig>("GET", "/v1/admin/desk-config")),
    ]);
    if (!users || !cfg || !still()) return;
    const teamNames = (cfg.teams ?? []).map((t) => t.name);
    const rows = users.map((u) => {
      const role = h("select", { "data-kefu": "user-role" });
      for (const r of ["agent", "supervisor", "admin"]) role.append(h("option", { value: r, selected: r === u.role }, r));
      const boxes = teamNames.map((t) => {
        const cb = h("input", { type: "checkbox", value: t, checked: u.teams.includes(t) });
        return { cb, label: h("label", { class: "check" }, cb, t) };
      });
      const save = h("button", { type: "button", "data-kefu": "save-user" }, this.t.save);
      save.addEventListener("click", async () => {
        const body = { role: role.value, teams: boxes.filter((b) => b.cb.checked).map((b) => b.cb.value) };
        if (await this.guard(this.api.call("PATCH", `/v1/admin/users/${u.id}`, body))) this.toast(this.t.saved);
      });
      return h(
        "fieldset",
        { class: "user", "data-user": u.email },
        h("legend", {}, `${u.display_name ?? ""} ${u.email}`.trim()),
        h("label", {}, this.t.role, role),
        teamNames.length ? h("div", { class: "checks" }, h("span", {}, this.t.teamsOf), ...boxes.map((b) => b.label)) : null,
        save,
      );
    });
    this.settingsForm(this.t.pageAgents, teamNames.length ? null : this.t.teamsHint, ...rows);
  }

  private async wordsPage() {
    const still = this.showing();
    const cur = await this.guard(
      this.api.call<{ words: string; default_action: string; entries: number; categories: Record<string, number>; active_entries: number }>(
        "GET",
        "/v1/admin/moderation",
      ),
    );
    if (!cur || !still()) return;
    const words = h("textarea", { rows: "14", class: "mono", spellcheck: "false", "data-kefu": "words" }, cur.words);
    const action = h("select", { "data-kefu": "default-action" });
    for (const a of ["flag", "mask", "block"]) action.append(h("option", { value: a, selected: a === cur.default_action }, a));
    const counts = h("p", { class: "muted", "data-kefu": "word-counts" });
    const showCounts = (c: typeof cur) => {
      const cats = Object.entries(c.categories)
        .map(([k, n]) => `${k} ${n}`)
        .join(" · ");
      counts.textContent = `${c.entries} ${this.t.entries}${cats ? " (" + cats + ")" : ""} · ${this.t.active}: ${c.active_entries}`;
    };
    showCounts(cur);
    const form = this.settingsForm(
      this.t.words,
      this.t.wordsHint,
      words,
      h("label", {}, this.t.defaultAction, action),
      counts,
      h("button", { type: "submit" }, this.t.save),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const r = await this.guard(this.api.call<typeof cur>("PUT", "/v1/admin/moderation", { words: words.value, default_action: action.value }));
      if (r) {
        showCounts(r);
        this.toast(this.t.saved);
      }
    });
    // Try a text against the lists in force.
    const text = h("textarea", { rows: "3", "data-kefu": "word-test" });
    const out = h("div", { class: "verdict", "data-kefu": "word-verdict" });
    const tryForm = h("form", { class: "kb" }, h("h2", {}, this.t.tryText), text, h("button", { type: "submit" }, this.t.check), out);
    tryForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!text.value.trim()) return;
      const r = await this.guard(
        this.api.call<{ action: string | null; hits: { word: string; category: string; action: string; matched: string }[]; text: string }>(
          "POST",
          "/v1/admin/moderation/check",
          { text: text.value },
        ),
      );
      if (!r) return;
      out.replaceChildren(
        h("p", {}, `${this.t.verdict}: ${r.action ?? this.t.none}`),
        h("ul", {}, ...r.hits.map((x) => h("li", {}, `${x.matched} → ${x.word} · ${x.category} · ${x.action}`))),
        h("pre", {}, r.text),
      );
    });
    this.side.replaceChildren(tryForm);
  }

  private async modelsPage() {
    const still = this.showing();
    const cur = await this.guard(this.api.call<{ source: string; config: ModelConfig }>("GET", "/v1/admin/model-config"));
    if (!cur || !still()) return;
    const c = cur.config;
    const providers = h("div", { class: "rows" });
    const chain = h("div", { class: "rows" });
    const cheap = h("div", { class: "rows" });
    const provRows: (() => ModelConfig["providers"][number])[] = [];
    const chainRows: (() => ChainEntry)[] = [];
    const cheapRows: (() => ChainEntry)[] = [];
    const row = <T,>(box: HTMLElement, list: (() => T)[], cells: HTMLInputElement[], read: () => T) => {
      const remove = h("button", { type: "button", class: "link" }, this.t.remove);
      const el = h("div", { class: "row" }, ...cells, remove);
      list.push(read);
      remove.addEventListener("click", () => {
        list.splice(list.indexOf(read), 1);
        el.remove();
      });
      box.append(el);
    };
    const addProvider = (p: ModelConfig["providers"][number]) => {
      const name = h("input", { value: p.name, placeholder: this.t.provider, "data-kefu": "provider-name" });
      const url = h("input", { value: p.base_url, placeholder: "https://…/v1", "data-kefu": "provider-url" });
      const key = h("input", { type: "password", value: p.api_key ?? "", placeholder: this.t.apiKey, autocomplete: "off", title: this.t.keepKey });
      row(providers, provRows, [name, url, key], () => ({ name: name.value.trim(), base_url: url.value.trim(), api_key: key.value || null }));
    };
    const price = (v: number | null | undefined) =>
      h("input", { type: "number", min: "0", step: "any", value: v === null || v === undefined ? "" : String(v), title: this.t.prices, class: "price" });
    const num = (el: HTMLInputElement) => (el.value === "" ? null : Number(el.value));
    const addLink = (box: HTMLElement, rows: (() => ChainEntry)[], key: string) => (l: ChainEntry) => {
      const provider = h("input", { value: l.provider, placeholder: this.t.provider, "data-kefu": `${key}-provider` });
      const model = h("input", { value: l.model, placeholder: this.t.model, "data-kefu": `${key}-model` });
      const pin = price(l.input_price);
      const pout = price(l.output_price);
      row(box, rows, [provider, model, pin, pout], () => ({
        provider: provider.value.trim(),
        model: model.value.trim(),
        input_price: num(pin),
        output_price: num(pout),
      }));
    };
    const addMain = addLink(chain, chainRows, "chain");
    const addCheap = addLink(cheap, cheapRows, "cheap");
    c.providers.forEach(addProvider);
    c.chain.forEach(addMain);
    (c.cheap_chain ?? []).forEach(addCheap);
    const addP = h("button", { type: "button", class: "link" }, `+ ${this.t.providers}`);
    addP.addEventListener("click", () => addProvider({ name: "", base_url: "", api_key: null }));
    const addL = h("button", { type: "button", class: "link" }, `+ ${this.t.chain}`);
    addL.addEventListener("click", () => addMain({ provider: "", model: "" }));
    const addC = h("button", { type: "button", class: "link", "data-kefu": "add-cheap" }, `+ ${this.t.cheapChain}`);
    addC.addEventListener("click", () => addCheap({ provider: "", model: "" }));
    const currency = h("input", { value: c.currency ?? "", placeholder: "CNY", maxlength: "8", "data-kefu": "currency" });
    const temperature = h("input", { type: "number", step: "0.1", min: "0", max: "2", value: c.temperature === null ? "" : String(c.temperature) });
    const maxTokens = h("input", { type: "number", min: "1", value: c.max_tokens === null ? "" : String(c.max_tokens) });
    const persona = h("textarea", { rows: "5", "data-kefu": "persona" }, c.system_prompt ?? "");
    const reset = h("button", { type: "button", class: "link", "data-kefu": "model-default" }, this.t.useDefault);
    reset.addEventListener("click", async () => {
      if ((await this.guard(this.api.call("DELETE", "/v1/admin/model-config"))) !== undefined) this.modelsPage();
    });
    const form = this.settingsForm(
      this.t.pageModels,
      `${this.t.source}: ${this.t.sources[cur.source] ?? cur.source}`,
      h("h3", {}, this.t.providers),
      providers,
      addP,
      h("h3", {}, this.t.chain),
      h("p", { class: "muted" }, this.t.prices),
      chain,
      addL,
      h("h3", {}, this.t.cheapChain),
      cheap,
      addC,
      h("label", {}, this.t.currency, currency),
      h("label", {}, this.t.temperature, temperature),
      h("label", {}, this.t.maxTokens, maxTokens),
      h("label", {}, this.t.persona, persona),
      h("button", { type: "submit" }, this.t.save),
      reset,
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body: ModelConfig = {
        providers: provRows.map((r) => r()),
        chain: chainRows.map((r) => r()),
        cheap_chain: cheapRows.map((r) => r()),
        currency: currency.value.trim() || null,
        temperature: temperature.value === "" ? null : Number(temperature.value),
        max_tokens: maxTokens.value === "" ? null : Number(maxTokens.value),
        system_prompt: persona.value.trim() || null,
      };
      if (await this.guard(this.api.call("PUT", "/v1/admin/model-config", body))) {
        this.toast(this.t.saved);
        this.modelsPage();
      }
    });
  }

  private kbSearch() {
    const q = h("input", { type: "search", placeholder: this.t.kbPlaceholder, "data-kefu": "kb-query" });
    const out = h("ol", { class: "hits", "data-kefu": "kb-hits" });
    const form = h("form", { class: "kb" }, h("h2", {}, this.t.kb), q, h("button", { type: "submit" }, this.t.search), out);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!q.value.trim()) return;
      const r = await this.guard(this.api.call<{ hits: Hit[] }>("POST", "/v1/admin/kb/search", { query: q.value.trim(), k: 5 }));
      if (!r) return;
      const items = r.hits.map((hit) => {
        const li = h("li", {}, h("small", {}, hit.citation.label), h("div", {}, hit.text));
        li.addEventListener("click", () => {
          this.replyBox.value = (this.replyBox.value ? this.replyBox.value + "\n" : "") + hit.text;
        });
        return li;
      });
      out.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, this.t.noHits)]));
    });
    return form;
  }
}

function toBase64(f: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1] ?? "");
    r.onerror = () => reject(r.error);
    r.readAsDataURL(f);
  });
}

async function digest(text: string): Promise<string> {
  const bytes = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text.toLowerCase())));
  return [...bytes.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** One line per order: the shop's own summary in the console's language, else id and status. */
function summariseOrders(v: unknown, lang: Lang): string {
  const list = Array.isArray(v) ? v : ((v as { orders?: unknown[] })?.orders ?? []);
  return (list as Record<string, unknown>[])
    .map((o) => {
      const s = o.summary as Record<string, string> | string | undefined;
      const text = typeof s === "string" ? s : s?.[lang];
      return text ?? [o.id, o.status].filter(Boolean).join(" ");
    })
    .join("\n");
}

new Console().start();
