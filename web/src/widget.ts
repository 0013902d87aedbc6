// The customer chat widget. Embed with one tag:
//   <script src="https://your-kefu/widget.js" data-tenant="demo" data-lang="zh"
//           data-identity-token="(optional, signed by your backend)"></script>
// It keeps its session and conversation in localStorage, so a reload or a reconnect resumes where it left off
// (events after the last one seen are replayed, including an answer still being written).

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
import { h, richText, uuid } from "./dom";

const T = {
  zh: {
    title: "在线客服",
    open: "咨询客服",
    placeholder: "请输入您的问题…",
    send: "发送",
    human: "转人工",
    end: "结束对话",
    welcome: "您好！我是智能客服，可以帮您查订单、物流、退货和常见问题。",
    quick: ["我的订单到哪了？", "退货政策是什么？", "多久能退款？"],
    queued: "已为您转接人工客服，请稍候…",
    agentJoined: "人工客服已接入，正在为您服务。",
    backToBot: "对话已转回智能客服。",
    closed: "对话已结束。",
    rateTitle: "请为本次服务打分",
    rateComment: "还有什么想告诉我们的吗？（选填）",
    rateSubmit: "提交评价",
    rated: "感谢您的评价！",
    retry: "发送失败，正在重试…",
    offline: "连接中断，正在重新连接…",
    you: "我",
    bot: "智能客服",
    agent: "人工客服",
    newChat: "开始新对话",
    error: "出错了：",
    agentTyping: "客服正在输入…",
    attach: "发送图片",
    tooBig: "图片不能超过 5 MB",
    read: "已读",
  },
  en: {
    title: "Customer service",
    open: "Chat with us",
    placeholder: "Type your question…",
    send: "Send",
    human: "Talk to a human",
    end: "End chat",
    welcome: "Hi! I'm the assistant. I can help with orders, delivery, returns and common questions.",
    quick: ["Where is my order?", "What is the return policy?", "How long do refunds take?"],
    queued: "We're connecting you to a person, please wait…",
    agentJoined: "An agent has joined the chat.",
    backToBot: "You're chatting with the assistant again.",
    closed: "This chat has ended.",
    rateTitle: "How did we do?",
    rateComment: "Anything else you'd like to tell us? (optional)",
    rateSubmit: "Submit",
    rated: "Thank you for your feedback!",
    retry: "Not sent, retrying…",
    offline: "Connection lost, reconnecting…",
    you: "You",
    bot: "Assistant",
    agent: "Agent",
    newChat: "Start a new chat",
    error: "Something went wrong: ",
    agentTyping: "The agent is typing…",
    attach: "Send an image",
    tooBig: "Images can be at most 5 MB",
    read: "Read",
  },
};
type Lang = keyof typeof T;

const CSS = `
.kf-root{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.5 system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;color:#1f2328}
.kf-launch{background:#1677ff;color:#fff;border:0;border-radius:24px;padding:12px 18px;font-size:15px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.2)}
.kf-panel{width:370px;height:580px;max-height:calc(100vh - 40px);background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}
.kf-head{background:#1677ff;color:#fff;padding:10px 12px;display:flex;align-items:center;gap:6px}
.kf-head b{flex:1}
.kf-head button{background:rgba(255,255,255,.18);color:#fff;border:0;border-radius:6px;padding:4px 8px;cursor:pointer;font-size:12px}
.kf-log{flex:1;overflow-y:auto;padding:12px;background:#f6f7f9}
.kf-msg{margin:6px 0;display:flex;flex-direction:column}
.kf-msg .kf-who{font-size:11px;color:#6b7280;margin:0 4px}
.kf-bubble{max-width:82%;padding:8px 11px;border-radius:10px;white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #e5e7eb}
.kf-customer{align-items:flex-end}.kf-customer .kf-bubble{background:#1677ff;color:#fff;border-color:#1677ff}
.kf-agent .kf-bubble{background:#ecfdf5;border-color:#a7f3d0}
.kf-bubble a{color:inherit;text-decoration:underline}
.kf-cite{font-size:11px;background:#eef2ff;color:#3730a3;border-radius:4px;padding:0 3px;margin:0 1px}
.kf-note{text-align:center;color:#6b7280;font-size:12px;margin:8px 0}
.kf-pending .kf-bubble{opacity:.6}
.kf-typing{color:#6b7280;font-size:12px;margin:4px;display:none}.kf-typing.on{display:block}
.kf-readmark{font-size:10px;color:#6b7280;margin:0 4px}
.kf-form .kf-attach{background:#fff;color:#1677ff;border:1px solid #d1d5db;padding:0 10px;font-size:16px}
.kefu-image{max-width:100%;max-height:240px;border-radius:6px;display:block}
.kf-quick{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.kf-quick button{border:1px solid #1677ff;color:#1677ff;background:#fff;border-radius:14px;padding:3px 10px;cursor:pointer;font-size:12px}
.kf-form{display:flex;gap:6px;padding:8px;border-top:1px solid #e5e7eb}
.kf-form textarea{flex:1;resize:none;border:1px solid #d1d5db;border-radius:8px;padding:6px 8px;font:inherit;height:38px}
.kf-form button{background:#1677ff;color:#fff;border:0;border-radius:8px;padding:0 14px;cursor:pointer}
.kf-rate{padding:10px;background:#fff;border:1px solid #e5e7eb;border-radius:10px;margin:8px 0}
.kf-stars{display:flex;gap:4px;margin:6px 0}
.kf-stars button{font-size:22px;background:none;border:0;cursor:pointer;color:#d1d5db;padding:0}
.kf-stars button.on{color:#f59e0b}
.kf-rate textarea{width:100%;box-sizing:border-box;border:1px solid #d1d5db;border-radius:6px;font:inherit;padding:4px}
.kf-submit{margin-top:6px;background:#1677ff;color:#fff;border:0;border-radius:6px;padding:5px 12px;cursor:pointer}
@media (max-width:480px){.kf-root{right:0;bottom:0;left:0}.kf-root.kf-open{top:0}.kf-panel{width:100vw;height:100vh;max-height:none;border-radius:0}.kf-launch{position:fixed;right:16px;bottom:16px}}
`;

interface Saved {
  token: string;
  conversation: string;
  lastSeq: number;
}

class Widget {
  private t: (typeof T)[Lang];
  private api: Api;
  private root = h("div", { class: "kf-root", "data-kefu": "widget" });
  private log = h("div", { class: "kf-log", role: "log", "aria-live": "polite" });
  private input = h("textarea", { rows: "1" });
  private form = h("form", { class: "kf-form" });
  private panel = h("div", { class: "kf-panel" });
  private conv: Conversation | null = null;
  /** Settles when the panel's conversation is ready (or failed to start, which it has said): the first one, or a
   *  new one after "new chat". */
  private starting: Promise<void> = Promise.resolve();
  /** A message sent before that is waiting for it. */
  private waitingToSend = false;
  private source: EventSource | null = null;
  private lastSeq = 0;
  /** Rendered messages by seq, and answers being streamed by the seq of the question they answer. */
  private bySeq = new Map<number, HTMLElement>();
  private streaming = new Map<number, { el: HTMLElement; text: string }>();
  private ratingShown = false;
  private typingEl = h("div", { class: "kf-typing", "data-kefu": "typing", "aria-live": "polite" });
  private typingTimer: number | undefined;
  private typing: TypingSignal;
  private read: ReadSignal;

  constructor(
    private base: string,
    private tenant: string,
    lang: Lang,
    private identityToken: string | null,
  ) {
    this.t = T[lang];
    this.api = new Api(base);
    this.input.placeholder = this.t.placeholder;
    this.typingEl.textContent = this.t.agentTyping;
    this.typing = new TypingSignal(this.api, () => this.conv?.id ?? null);
    this.read = new ReadSignal(this.api, () => this.conv?.id ?? null);
  }

  /** One saved conversation per site, tenant and signed-in customer. The identity token is re-signed on every
   *  page load, so the key is its subject (read, not verified: the server verifies the token itself). */
  private get storageKey() {
    return `kefu:${this.base}:${this.tenant}:${this.identityToken ? "id:" + tokenSubject(this.identityToken) : "anon"}`;
  }

  mount() {
    const style = h("style", {}, CSS);
    document.head.append(style);
    const launch = h("button", { class: "kf-launch", type: "button", "data-kefu": "open" }, this.t.open);
    launch.addEventListener("click", () => this.open(launch));
    this.root.append(launch);
    document.body.append(this.root);
    if (new URLSearchParams(location.search).has("kefu-open")) this.open(launch);
  }

  private async open(launch: HTMLElement) {
    launch.remove();
    this.root.classList.add("kf-open");
    const human = h("button", { type: "button", "data-kefu": "human" }, this.t.human);
    human.addEventListener("click", () => this.requestHuman());
    const end = h("button", { type: "button", "data-kefu": "end" }, this.t.end);
    end.addEventListener("click", () => this.end());
    const head = h("div", { class: "kf-head" }, h("b", {}, this.t.title), human, end);
    const send = h("button", { type: "submit", "data-kefu": "send" }, this.t.send);
    const file = h("input", { type: "file", accept: IMAGE_TYPES, hidden: true, "data-kefu": "file" });
    const attach = h("button", { type: "button", class: "kf-attach", title: this.t.attach, "aria-label": this.t.attach, "data-kefu": "attach" }, "+");
    attach.addEventListener("click", () => file.click());
    file.addEventListener("change", async () => {
      const f = file.files?.[0];
      file.value = "";
      if (!f || !this.conv) return;
      try {
        await uploadImage(this.api, this.conv.id, f);
      } catch (e) {
        this.note(e instanceof ApiError && e.status === 413 ? this.t.tooBig : this.t.error + (e as Error).message);
      }
    });
    this.form.append(attach, file, this.input, send);
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendText(this.input.value);
    });
    this.input.addEventListener("input", () => this.typing.keystroke());
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.sendText(this.input.value);
      }
    });
    this.panel.append(head, this.log, this.typingEl, this.form);
    this.root.append(this.panel);
    await this.begin(this.start());
  }

  /** Waits for the panel's conversation to be ready (see `starting`); a failure is shown, not thrown. */
  private begin(ready: Promise<void>): Promise<void> {
    this.starting = ready.catch((e) => {
      this.note(this.t.error + (e as Error).message);
    });
    return this.starting;
  }

  /** Resumes the saved conversation if it is still open, else starts a new one. */
  private async start() {
    const raw = localStorage.getItem(this.storageKey);
    const saved: Saved | null = raw ? JSON.parse(raw) : null;
    if (saved) {
      this.api.token = saved.token;
      try {
        const conv = await this.api.call<Conversation>("GET", `/v1/conversations/${saved.conversation}`);
        if (conv.status === "open") {
          this.conv = conv;
          this.welcome();
          this.subscribe(0);
          return;
        }
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
      }
    }
    await this.newConversation(true);
  }

  /** A new session; with `resumeOpen`, a signed-in customer's open conversation from another device or browser is
   *  picked up instead of starting another. */
  private async newConversation(resumeOpen = false) {
    this.log.replaceChildren();
    this.bySeq.clear();
    this.streaming.clear();
    this.ratingShown = false;
    this.lastSeq = 0;
    this.read.reset();
    const session = await new Api(this.base).call<{ access_token: string }>("POST", "/v1/customer-sessions", {
      tenant: this.tenant,
      identity_token: this.identityToken ?? undefined,
    });
    this.api.token = session.access_token;
    if (resumeOpen && this.identityToken) {
      const open = await this.api.call<{ conversations: Conversation[] }>("GET", "/v1/conversations?status=open&limit=1");
      if (open.conversations.length) {
        this.conv = open.conversations[0];
        this.save();
        this.welcome();
        this.subscribe(0);
        return;
      }
    }
    this.conv = await this.api.call<Conversation>("POST", "/v1/conversations", { channel: "web" });
    this.save();
    this.welcome();
    this.subscribe(0);
  }

  private save() {
    if (!this.conv || !this.api.token) return;
    const s: Saved = { token: this.api.token, conversation: this.conv.id, lastSeq: this.lastSeq };
    localStorage.setItem(this.storageKey, JSON.stringify(s));
  }

  private welcome() {
    this.note(this.t.welcome);
    const quick = h("div", { class: "kf-quick", "data-kefu": "quick" });
    for (const q of this.t.quick) {
      const b = h("button", { type: "button" }, q);
      b.addEventListener("click", () => this.sendText(q));
      quick.append(b);
    }
    this.log.append(quick);
  }

  private subscribe(after: number) {
    if (!this.conv) return;
    this.source?.close();
    const src = this.api.events(this.conv.id, after);
    this.source = src;
    for (const name of EVENT_NAMES) {
      src.addEventListener(name, (ev) => this.onEvent(JSON.parse((ev as MessageEvent).data) as StreamEvent));
    }
    let warned: HTMLElement | null = null;
    src.onerror = () => {
      if (src.readyState === EventSource.CLOSED) {
        // The server ended the stream (restart): subscribe again from what we have.
        setTimeout(() => this.subscribe(this.lastSeq), 1000);
      } else if (!warned) {
        warned = this.note(this.t.offline);
      }
    };
    src.onopen = () => {
      warned?.remove();
      warned = null;
    };
  }

  private onEvent(e: StreamEvent) {
    if ("seq" in e && typeof e.seq === "number") {
      if (e.seq <= this.lastSeq && this.bySeq.has(e.seq)) return;
      this.lastSeq = Math.max(this.lastSeq, e.seq);
      this.save();
    }
    switch (e.type) {
      case "message.created":
        this.showMessage(e.message);
        break;
      case "message.delta": {
        let s = this.streaming.get(e.reply_to_seq);
        if (!s) {
          const el = this.bubble("assistant", "");
          el.dataset.kefuStreaming = "true";
          el.dataset.streamed = "true";
          s = { el, text: "" };
          this.streaming.set(e.reply_to_seq, s);
        }
        if (e.offset === s.text.length) {
          s.text += e.text;
        } else if (e.offset < s.text.length && e.offset + e.text.length > s.text.length) {
          s.text = s.text.slice(0, e.offset) + e.text;
        }
        this.fill(s.el.querySelector(".kf-bubble")!, s.text);
        this.scroll();
        break;
      }
      case "message.reset": {
        const s = this.streaming.get(e.reply_to_seq);
        if (s) {
          s.text = "";
          this.fill(s.el.querySelector(".kf-bubble")!, "");
        }
        break;
      }
      case "conversation.handler_changed":
        this.note(e.handler === "queued" ? this.t.queued : e.handler === "agent" ? this.t.agentJoined : this.t.backToBot);
        break;
      case "conversation.status_changed":
        if (e.status === "closed") this.closed();
        break;
      case "conversation.rated":
        this.root.querySelector(".kf-rate")?.remove();
        this.note(this.t.rated);
        break;
      case "conversation.typing":
        if (e.role === "agent") this.showTyping(e.typing);
        break;
      case "conversation.read":
        if (e.role === "agent") this.markRead(e.seq);
        break;
      case "conversation.flagged":
        break;
    }
  }

  private showTyping(on: boolean) {
    this.typingEl.classList.toggle("on", on);
    clearTimeout(this.typingTimer);
    // A lost "stopped typing" must not leave the indicator on.
    if (on) this.typingTimer = window.setTimeout(() => this.typingEl.classList.remove("on"), 8000);
  }

  /** The agent has seen our messages up to `seq`. */
  private markRead(seq: number) {
    for (const [s, el] of this.bySeq) {
      if (s <= seq && el.dataset.role === "customer" && !el.querySelector(".kf-readmark")) {
        el.append(h("span", { class: "kf-readmark", "data-kefu": "read" }, this.t.read));
      }
    }
  }

  private showMessage(m: Message) {
    if (this.bySeq.has(m.seq)) return;
    let el: HTMLElement;
    if (m.role === "assistant" && m.reply_to_seq !== null && this.streaming.has(m.reply_to_seq)) {
      el = this.streaming.get(m.reply_to_seq)!.el;
      this.streaming.delete(m.reply_to_seq);
      delete el.dataset.kefuStreaming;
      this.fill(el.querySelector(".kf-bubble")!, m.content);
    } else if (m.role === "customer" && this.pendingFor(m)) {
      // Our own message sent a moment ago: the pending bubble becomes the stored one.
      el = this.pendingFor(m)!;
      el.classList.remove("kf-pending");
      delete el.dataset.kefuPending;
    } else {
      el = this.bubble(m.role, m.content);
    }
    el.dataset.seq = String(m.seq);
    el.dataset.role = m.role;
    this.bySeq.set(m.seq, el);
    if (m.role === "agent") {
      this.showTyping(false);
      this.read.seen(m.seq);
    }
    this.scroll();
  }

  private pendingFor(m: Message): HTMLElement | null {
    const key = m.idempotency_key;
    if (!key) return null;
    return this.log.querySelector<HTMLElement>(`[data-kefu-pending="${CSS_escape(key)}"]`);
  }

  private bubble(role: Message["role"], text: string): HTMLElement {
    if (role === "system") return this.note(text);
    const who = role === "customer" ? this.t.you : role === "agent" ? this.t.agent : this.t.bot;
    const b = h("div", { class: "kf-bubble" });
    this.fill(b, text);
    const el = h("div", { class: `kf-msg kf-${role}`, "data-kefu": "message" }, h("span", { class: "kf-who" }, who), b);
    this.log.append(el);
    this.scroll();
    return el;
  }

  /** Message text with links and citation labels like [1] set apart; never parsed as HTML. */
  private fill(el: Element, text: string) {
    el.replaceChildren();
    const image = imageId(text);
    if (image) {
      el.append(imageElement(this.api, image));
      return;
    }
    const parts = text.split(/(\[\d{1,2}\])/);
    for (const p of parts) {
      if (/^\[\d{1,2}\]$/.test(p)) el.append(h("span", { class: "kf-cite" }, p));
      else if (p) el.append(richText(p));
    }
  }

  private note(text: string): HTMLElement {
    const el = h("div", { class: "kf-note", "data-kefu": "note" }, text);
    this.log.append(el);
    this.scroll();
    return el;
  }

  private scroll() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  private async sendText(raw: string): Promise<void> {
    const text = raw.trim();
    if (!text) return;
    if (!this.conv) {
      // The panel opens at once and its conversation a moment later: a message sent in between waits for it (the
      // text stays in the box until then) instead of being dropped.
      if (this.waitingToSend) return;
      this.waitingToSend = true;
      const fromBox = raw === this.input.value;
      await this.starting;
      this.waitingToSend = false;
      if (!this.conv) return;
      // What the box holds by now (the customer may have typed on while waiting), not what it held at the click.
      if (fromBox) return this.sendText(this.input.value);
    }
    this.input.value = "";
    this.typing.stop();
    const key = uuid();
    const el = this.bubble("customer", text);
    el.classList.add("kf-pending");
    el.dataset.kefuPending = key;
    // Retried with the same key until stored: the server stores it exactly once.
    for (let attempt = 0; ; attempt++) {
      try {
        await this.api.call("POST", `/v1/conversations/${this.conv.id}/messages`, { content: text }, { "Idempotency-Key": key });
        el.classList.remove("kf-pending");
        return;
      } catch (e) {
        if (e instanceof ApiError && e.status < 500 && e.status !== 429) {
          el.classList.remove("kf-pending");
          this.note(this.t.error + e.message);
          return;
        }
        if (attempt === 0) this.note(this.t.retry);
        await new Promise((r) => setTimeout(r, Math.min(8000, 500 * 2 ** attempt)));
      }
    }
  }

  private async requestHuman() {
    if (!this.conv) return;
    try {
      await this.api.call("POST", `/v1/conversations/${this.conv.id}/handoff`, {});
    } catch (e) {
      this.note(this.t.error + (e as Error).message);
    }
  }

  private async end() {
    if (!this.conv) return;
    try {
      await this.api.call("POST", `/v1/conversations/${this.conv.id}/close`);
    } catch (e) {
      this.note(this.t.error + (e as Error).message);
    }
  }

  private closed() {
    this.note(this.t.closed);
    this.form.style.display = "none";
    if (this.ratingShown || this.conv?.rating) return;
    this.ratingShown = true;
    let score = 0;
    const stars = h("div", { class: "kf-stars", role: "radiogroup" });
    const buttons: HTMLButtonElement[] = [];
    for (let i = 1; i <= 5; i++) {
      const b = h("button", { type: "button", "aria-label": String(i), "data-kefu-star": String(i) }, "★");
      b.addEventListener("click", () => {
        score = i;
        buttons.forEach((x, j) => x.classList.toggle("on", j < i));
      });
      buttons.push(b);
      stars.append(b);
    }
    const comment = h("textarea", { rows: "2", placeholder: this.t.rateComment, "data-kefu": "comment" });
    const submit = h("button", { type: "button", class: "kf-submit", "data-kefu": "rate" }, this.t.rateSubmit);
    submit.addEventListener("click", async () => {
      if (!score || !this.conv) return;
      try {
        await this.api.call("POST", `/v1/conversations/${this.conv.id}/rating`, {
          rating: score,
          comment: comment.value.trim() || undefined,
        });
      } catch (e) {
        this.note(this.t.error + (e as Error).message);
      }
    });
    const again = h("button", { type: "button", class: "kf-submit", "data-kefu": "new" }, this.t.newChat);
    again.addEventListener("click", async () => {
      // Until the new conversation exists, a message sent waits for it (see sendText) instead of going to the
      // closed one, which would refuse it.
      this.conv = null;
      this.form.style.display = "";
      await this.begin(this.newConversation());
    });
    this.log.append(h("div", { class: "kf-rate", "data-kefu": "rating" }, h("b", {}, this.t.rateTitle), stars, comment, submit));
    this.log.append(again);
    this.scroll();
  }
}

function tokenSubject(token: string): string {
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (typeof claims.sub === "string") return claims.sub;
  } catch {
    // not a JWT: fall through
  }
  return token;
}

function CSS_escape(s: string): string {
  return s.replace(/["\\]/g, "\\$&");
}

(function boot() {
  const script = document.currentScript as HTMLScriptElement | null;
  const src = script?.src ?? location.href;
  const base = new URL(src, location.href).origin;
  const tenant = script?.dataset.tenant ?? "demo";
  const wanted = (script?.dataset.lang ?? navigator.language ?? "zh").toLowerCase();
  const lang: Lang = wanted.startsWith("en") ? "en" : "zh";
  const identity = script?.dataset.identityToken || null;
  const w = new Widget(base, tenant, lang, identity);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => w.mount());
  else w.mount();
})();
