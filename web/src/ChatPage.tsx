// The chat: a conversation streamed from /v1/chat/completions, a stop button that aborts the
// request (the gateway then cancels the generation), and the model and sampling settings.
import { FormEvent, KeyboardEvent, useEffect, useRef, useState } from "react";
import { ChatMessage, SamplingSettings, listModels, streamChat } from "./api";

interface Turn extends ChatMessage {
  id: number;
  note?: string; // under an answer: how it ended
  failed?: boolean;
}

const defaultSettings: SamplingSettings = { temperature: 0.7, topP: 0.95, maxTokens: 256, seed: "" };

export function ChatPage() {
  const [models, setModels] = useState<string[]>([]);
  const [model, setModel] = useState("");
  const [settings, setSettings] = useState(defaultSettings);
  const [system, setSystem] = useState("");
  const [turns, setTurns] = useState<Turn[]>([]);
  const [draft, setDraft] = useState("");
  const [busy, setBusy] = useState(false);
  const [loadError, setLoadError] = useState("");
  const abortRef = useRef<AbortController | null>(null);
  const endRef = useRef<HTMLDivElement>(null);
  const nextId = useRef(1);

  useEffect(() => {
    listModels()
      .then((ids) => {
        setModels(ids);
        setModel((m) => m || ids[0] || "");
      })
      .catch((e: Error) => setLoadError(e.message));
  }, []);

  // Braces: newer browsers return a promise from scrollIntoView, and an effect may only return a cleanup.
  useEffect(() => {
    endRef.current?.scrollIntoView({ block: "end" });
  }, [turns]);

  const updateTurn = (id: number, change: (t: Turn) => Turn) =>
    setTurns((all) => all.map((t) => (t.id === id ? change(t) : t)));

  async function send(event?: FormEvent) {
    event?.preventDefault();
    const text = draft.trim();
    if (!text || busy || !model) return;
    const user: Turn = { id: nextId.current++, role: "user", content: text };
    const answer: Turn = { id: nextId.current++, role: "assistant", content: "" };
    const history: ChatMessage[] = [
      ...(system.trim() ? [{ role: "system" as const, content: system.trim() }] : []),
      ...turns.filter((t) => !t.failed).map(({ role, content }) => ({ role, content })),
      { role: "user", content: text },
    ];
    setTurns((all) => [...all, user, answer]);
    setDraft("");
    setBusy(true);
    const controller = new AbortController();
    abortRef.current = controller;
    const started = performance.now();
    try {
      const result = await streamChat(
        model,
        history,
        settings,
        (piece) => updateTurn(answer.id, (t) => ({ ...t, content: t.content + piece })),
        controller.signal,
      );
      const seconds = (performance.now() - started) / 1000;
      const tokens = result.completionTokens;
      updateTurn(answer.id, (t) => ({
        ...t,
        note:
          `${result.finishReason ?? "done"}` +
          (tokens != null ? ` · ${tokens} tokens · ${(tokens / seconds).toFixed(1)} tok/s` : ""),
      }));
    } catch (e) {
      if (controller.signal.aborted) {
        updateTurn(answer.id, (t) => ({ ...t, note: "stopped" }));
      } else {
        updateTurn(answer.id, (t) => ({ ...t, failed: true, note: (e as Error).message }));
      }
    } finally {
      abortRef.current = null;
      setBusy(false);
    }
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      void send();
    }
  }

  const set = <K extends keyof SamplingSettings>(key: K, value: SamplingSettings[K]) =>
    setSettings((s) => ({ ...s, [key]: value }));

  return (
    <div className="chat-layout">
      <aside className="panel settings" aria-label="Settings">
        <h2>Settings</h2>
        <label>
          Model
          <select value={model} onChange={(e) => setModel(e.target.value)} data-testid="model">
            {models.map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </label>
        {loadError && <p className="error-text">{loadError}</p>}
        <label>
          System prompt
          <textarea
            rows={3}
            value={system}
            placeholder="You are a helpful assistant."
            onChange={(e) => setSystem(e.target.value)}
          />
        </label>
        <Slider label="Temperature" min={0} max={2} step={0.05} value={settings.temperature}
          onChange={(v) => set("temperature", v)} />
        <Slider label="Top-p" min={0} max={1} step={0.01} value={settings.topP} onChange={(v) => set("topP", v)} />
        <label>
          Max tokens
          <input type="number" min={1} max={4096} value={settings.maxTokens}
            onChange={(e) => set("maxTokens", Math.max(1, Number(e.target.value) || 1))} />
        </label>
        <label>
          Seed
          <input type="number" placeholder="random" value={settings.seed}
            onChange={(e) => set("seed", e.target.value)} />
        </label>
        <button type="button" className="ghost" onClick={() => setTurns([])} disabled={busy || turns.length === 0}>
          Clear conversation
        </button>
      </aside>

      <section className="panel conversation" aria-label="Conversation">
        <div className="messages" data-testid="messages">
          {turns.length === 0 && (
            <div className="empty">
              <div className="empty-mark" aria-hidden="true" />
              <h1>Ask the swarm</h1>
              <p>Answers stream token by token from the machines serving {model || "the model"}.</p>
            </div>
          )}
          {turns.map((t) => (
            <div key={t.id} className={`message ${t.role}${t.failed ? " failed" : ""}`}>
              <div className="avatar" aria-hidden="true">{t.role === "user" ? "You" : "AI"}</div>
              <div className="bubble">
                <div className="text" data-testid={t.role === "assistant" ? "answer" : undefined}>
                  {t.content || (busy && t.role === "assistant" && !t.note ? <span className="typing" /> : "")}
                </div>
                {t.note && <div className="note">{t.note}</div>}
              </div>
            </div>
          ))}
          <div ref={endRef} />
        </div>
        <form className="composer" onSubmit={send}>
          <textarea
            rows={2}
            value={draft}
            placeholder="Send a message (Enter to send, Shift+Enter for a new line)"
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={onKeyDown}
            aria-label="Message"
          />
          {busy ? (
            <button type="button" className="stop" onClick={() => abortRef.current?.abort()}>
              Stop
            </button>
          ) : (
            <button type="submit" className="primary" disabled={!draft.trim() || !model}>
              Send
            </button>
          )}
        </form>
      </section>
    </div>
  );
}

function Slider(props: {
  label: string;
  min: number;
  max: number;
  step: number;
  value: number;
  onChange: (v: number) => void;
}) {
  return (
    <label>
      <span className="slider-label">
        {props.label}
        <output>{props.value.toFixed(2)}</output>
      </span>
      <input type="range" min={props.min} max={props.max} step={props.step} value={props.value}
        onChange={(e) => props.onChange(Number(e.target.value))} />
    </label>
  );
}
