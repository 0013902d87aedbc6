// A small client for kefu's REST API: bearer auth, JSON, and the stable error shape.

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

export class Api {
  constructor(
    public base: string,
    public token: string | null = null,
  ) {}

  async call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const h: Record<string, string> = { ...headers };
    if (this.token) h["Authorization"] = `Bearer ${this.token}`;
    if (body !== undefined) h["Content-Type"] = "application/json";
    const res = await fetch(this.base + path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const e = data?.error ?? {};
      throw new ApiError(res.status, e.code ?? "http_" + res.status, e.message ?? res.statusText);
    }
    return data as T;
  }

  /** The event stream of a conversation, resuming after `after`. EventSource reconnects by itself and resumes
   *  with Last-Event-ID. */
  events(conversation: string, after: number): EventSource {
    const q = new URLSearchParams({ after: String(after), access_token: this.token ?? "" });
    return new EventSource(`${this.base}/v1/conversations/${conversation}/events?${q}`);
  }
}

export interface Message {
  id: string;
  seq: number;
  role: "customer" | "assistant" | "agent" | "system";
  content: string;
  reply_to_seq: number | null;
  idempotency_key?: string | null;
  created_at: string;
}

export interface Conversation {
  id: string;
  customer_id: string;
  status: "open" | "closed";
  handler: "bot" | "queued" | "agent";
  last_seq: number;
  assignee_id?: string | null;
  queued_at?: string | null;
  rating?: number | null;
  rating_comment?: string | null;
  team?: string | null;
  created_at: string;
  updated_at: string;
}

export type StreamEvent =
  | { type: "message.created"; seq: number; message: Message }
  | { type: "message.delta"; reply_to_seq: number; offset: number; text: string }
  | { type: "message.reset"; reply_to_seq: number }
  | { type: "conversation.status_changed"; seq: number; status: "open" | "closed" }
  | { type: "conversation.handler_changed"; seq: number; handler: "bot" | "queued" | "agent"; reason: string }
  | { type: "conversation.rated"; seq: number; rating: number; comment: string | null }
  | { type: "conversation.flagged"; seq: number; reason: string }
  | { type: "conversation.typing"; role: Message["role"]; typing: boolean }
  | { type: "conversation.read"; role: Message["role"]; seq: number };

export const EVENT_NAMES = [
  "message.created",
  "message.delta",
  "message.reset",
  "conversation.status_changed",
  "conversation.handler_changed",
  "conversation.rated",
  "conversation.flagged",
  "conversation.typing",
  "conversation.read",
];

/** Typing signals for one conversation: "on" at most every 3 s while typing, "off" 4 s after the last key or at
 *  once on send. Failures are ignored (a signal is a nicety, never worth an error). */
export class TypingSignal {
  private last = 0;
  private timer: number | undefined;
  constructor(
    private api: Api,
    private conversation: () => string | null,
  ) {}
  private send(typing: boolean) {
    const c = this.conversation();
    if (c) this.api.call("POST", `/v1/conversations/${c}/typing`, { typing }).catch(() => undefined);
  }
  keystroke() {
    const now = Date.now();
    if (now - this.last > 3000) {
      this.last = now;
      this.send(true);
    }
    clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.stop(), 4000);
  }
  stop() {
    clearTimeout(this.timer);
    if (this.last) {
      this.last = 0;
      this.send(false);
    }
  }
}

/** "Seen up to seq", sent once things settle (debounced), only ever forwards. */
export class ReadSignal {
  private sent = 0;
  private want = 0;
  private timer: number | undefined;
  constructor(
    private api: Api,
    private conversation: () => string | null,
  ) {}
  seen(seq: number) {
    this.want = Math.max(this.want, seq);
    clearTimeout(this.timer);
    this.timer = window.setTimeout(() => {
      const c = this.conversation();
      if (!c || this.want <= this.sent) return;
      this.sent = this.want;
      this.api.call("POST", `/v1/conversations/${c}/read`, { seq: this.want }).catch(() => undefined);
    }, 400);
  }
  reset() {
    this.sent = 0;
    this.want = 0;
  }
}

const IMAGE_MARKER = /^\[image:([0-9a-f-]{36})\]$/;
export const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
export const IMAGE_TYPES = "image/png,image/jpeg,image/gif,image/webp";

/** The attachment id when a message is an image (`[image:<id>]`). */
export function imageId(text: string): string | null {
  return IMAGE_MARKER.exec(text.trim())?.[1] ?? null;
}

/** An <img> for an attachment, fetched with the bearer token (never put in a URL). */
export function imageElement(api: Api, id: string): HTMLImageElement {
  const img = document.createElement("img");
  img.alt = "image";
  img.className = "kefu-image";
  img.dataset.attachment = id;
  fetch(`${api.base}/v1/attachments/${id}`, { headers: api.token ? { Authorization: `Bearer ${api.token}` } : {} })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
    .then((b) => {
      img.src = URL.createObjectURL(b);
    })
    .catch(() => {
      img.alt = "image unavailable";
    });
  return img;
}

/** Sends an image file to a conversation (the server checks its type from its bytes). */
export async function uploadImage(api: Api, conversation: string, file: File): Promise<void> {
  if (file.size > MAX_IMAGE_BYTES) throw new ApiError(413, "payload_too_large", "max 5 MB");
  const res = await fetch(`${api.base}/v1/conversations/${conversation}/attachments`, {
    method: "POST",
    headers: { Authorization: `Bearer ${api.token ?? ""}`, "Content-Type": file.type || "application/octet-stream" },
    body: file,
  });
  if (!res.ok) {
    const e = (await res.json().catch(() => null))?.error ?? {};
    throw new ApiError(res.status, e.code ?? "http_" + res.status, e.message ?? res.statusText);
  }
}
