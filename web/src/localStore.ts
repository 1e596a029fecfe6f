// What the chat keeps in the browser's localStorage: the conversations (with which one is open)
// and the settings, the API key included (it never leaves this browser except as the bearer token
// sent to this gateway). Whatever is stored is re-checked on load: a value from an older version,
// another tab or a hand edit that does not fit is dropped, never trusted.
import { SamplingSettings } from "./api";
import { AnswerState, Conversation, Turn } from "./conversation";

export const conversationsKey = "omni.chat.conversations.v1";
export const settingsKey = "omni.chat.settings.v1";

export interface ChatSettings extends SamplingSettings {
  model: string;
  system: string;
  apiKey: string;
}

export const defaultSettings: ChatSettings = {
  model: "",
  system: "",
  apiKey: "",
  temperature: 0.7,
  topP: 0.95,
  maxTokens: 256,
  seed: "",
};

export interface StoredChats {
  conversations: Conversation[];
  activeId: string | null;
}

function read(key: string): unknown {
  try {
    const text = window.localStorage.getItem(key);
    return text === null ? null : JSON.parse(text);
  } catch {
    return null;
  }
}

// False when the browser refuses (storage full or disabled): the caller tells the user.
function write(key: string, value: unknown): boolean {
  try {
    window.localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false;
  }
}

const isString = (v: unknown): v is string => typeof v === "string";
const answerStates: AnswerState[] = ["streaming", "done", "stopped", "failed"];

function turnOf(v: unknown): Turn | null {
  if (typeof v !== "object" || v === null) return null;
  const t = v as Record<string, unknown>;
  if (!isString(t.id) || !isString(t.content) || (t.role !== "user" && t.role !== "assistant")) return null;
  const turn: Turn = { id: t.id, role: t.role, content: t.content };
  if (t.role === "assistant") {
    const state = answerStates.find((s) => s === t.state) ?? "failed";
    // An answer still streaming when the page went away never finished.
    turn.state = state === "streaming" ? "failed" : state;
    if (state === "streaming") turn.note = "interrupted: the page was closed while the answer streamed";
  }
  if (isString(t.note) && turn.note === undefined) turn.note = t.note;
  return turn;
}

function conversationOf(v: unknown): Conversation | null {
  if (typeof v !== "object" || v === null) return null;
  const c = v as Record<string, unknown>;
  if (!isString(c.id) || !Array.isArray(c.turns)) return null;
  const turns = c.turns.map(turnOf).filter((t): t is Turn => t !== null);
  const sentFrom = typeof c.sentFrom === "number" && Number.isInteger(c.sentFrom) ? c.sentFrom : 0;
  return {
    id: c.id,
    title: isString(c.title) ? c.title : "New chat",
    turns,
    sentFrom: Math.min(Math.max(0, sentFrom), turns.length),
    updatedAt: typeof c.updatedAt === "number" ? c.updatedAt : 0,
  };
}

export function loadChats(): StoredChats {
  const stored = read(conversationsKey) as Record<string, unknown> | null;
  const list = Array.isArray(stored?.conversations) ? stored.conversations : [];
  const conversations = list.map(conversationOf).filter((c): c is Conversation => c !== null);
  const activeId = isString(stored?.activeId) && conversations.some((c) => c.id === stored.activeId) ? stored.activeId : null;
  return { conversations, activeId };
}

export function saveChats(chats: StoredChats): boolean {
  return write(conversationsKey, chats);
}

export function loadSettings(): ChatSettings {
  const stored = read(settingsKey);
  if (typeof stored !== "object" || stored === null) return defaultSettings;
  const s = stored as Record<string, unknown>;
  const num = (v: unknown, lo: number, hi: number, fallback: number) =>
    typeof v === "number" && Number.isFinite(v) && v >= lo && v <= hi ? v : fallback;
  return {
    model: isString(s.model) ? s.model : defaultSettings.model,
    system: isString(s.system) ? s.system : defaultSettings.system,
    apiKey: isString(s.apiKey) ? s.apiKey : defaultSettings.apiKey,
    temperature: num(s.temperature, 0, 2, defaultSettings.temperature),
    topP: num(s.topP, 0, 1, defaultSettings.topP),
    maxTokens: Math.round(num(s.maxTokens, 1, 1 << 20, defaultSettings.maxTokens)),
    seed: isString(s.seed) ? s.seed : defaultSettings.seed,
  };
}

export function saveSettings(settings: ChatSettings): boolean {
  return write(settingsKey, settings);
}
