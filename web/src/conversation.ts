// A conversation as the chat keeps it, and which of its turns are sent as history.
//
// Turns alternate: each question (user) is followed by its answer (assistant). Only answered
// exchanges are history: a failed or interrupted answer, or one stopped before its first word,
// takes its question out too, since two questions in a row break the alternation that chat
// templates require (the gateway then rejects every later request).
import { ChatMessage } from "./api";

export type AnswerState = "streaming" | "done" | "stopped" | "failed";

export interface Turn {
  id: string;
  role: "user" | "assistant";
  content: string;
  state?: AnswerState; // answers only
  note?: string; // under an answer: how it ended, or why it failed
}

export interface Conversation {
  id: string;
  title: string;
  turns: Turn[];
  // Turns before this index are no longer sent: the model's context could not hold them.
  sentFrom: number;
  updatedAt: number; // ms since the epoch
}

export function newId(): string {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

export function newConversation(): Conversation {
  return { id: newId(), title: "New chat", turns: [], sentFrom: 0, updatedAt: Date.now() };
}

export function titleOf(question: string): string {
  const line = question.replace(/\s+/g, " ").trim();
  return line.length > 48 ? `${line.slice(0, 47)}…` : line || "New chat";
}

export interface Exchange {
  question: string;
  answer: string;
  index: number; // of the question in the conversation's turns
}

function answered(t: Turn | undefined): t is Turn {
  return (
    t !== undefined &&
    t.role === "assistant" &&
    (t.state === "done" || (t.state === "stopped" && t.content.trim() !== ""))
  );
}

// The exchanges of turns[from, to) that count as history.
export function exchanges(turns: Turn[], from: number, to: number): Exchange[] {
  const out: Exchange[] = [];
  for (let i = Math.max(0, from); i + 1 < to; i++) {
    const q = turns[i];
    const a = turns[i + 1];
    if (q.role === "user" && answered(a)) {
      out.push({ question: q.content, answer: a.content, index: i });
      i++;
    }
  }
  return out;
}

// The request's messages: the system prompt (always kept), the history, the question.
export function requestMessages(system: string, history: Exchange[], question: string): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (system.trim() !== "") messages.push({ role: "system", content: system.trim() });
  for (const e of history) {
    messages.push({ role: "user", content: e.question }, { role: "assistant", content: e.answer });
  }
  messages.push({ role: "user", content: question });
  return messages;
}
