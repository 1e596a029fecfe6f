// The chat: conversations kept in this browser, answers streamed from /v1/chat/completions and
// rendered as Markdown, a stop button that aborts the request (the gateway then cancels the
// generation), a retry for a failed answer, and the settings.
import { FormEvent, KeyboardEvent, useEffect, useRef, useState } from "react";
import { ApiError, ModelInfo, listModels } from "./api";
import { streamWithinContext } from "./contextFit";
import { Conversation, Turn, exchanges, newConversation, newId, titleOf } from "./conversation";
import { ConversationList } from "./ConversationList";
import { ChatSettings, loadChats, loadSettings, saveChats, saveSettings } from "./localStore";
import { Markdown, copyText } from "./Markdown";
import { SettingsPanel } from "./SettingsPanel";

const wideScreen = "(min-width: 1101px)"; // room for the settings beside the conversation
const saveDelayMs = 300;

interface Streaming {
  conversationId: string;
  controller: AbortController;
}

export function ChatPage() {
  const [chats, setChats] = useState(loadChats);
  const [settings, setSettings] = useState(loadSettings);
  const [models, setModels] = useState<ModelInfo[]>([]);
  const [modelsError, setModelsError] = useState("");
  const [draft, setDraft] = useState("");
  const [streaming, setStreaming] = useState<Streaming | null>(null);
  const [showSettings, setShowSettings] = useState(() => window.matchMedia(wideScreen).matches);
  const [showChats, setShowChats] = useState(false);
  const [storageFailed, setStorageFailed] = useState(false);
  const endRef = useRef<HTMLDivElement>(null);

  const active = chats.conversations.find((c) => c.id === chats.activeId) ?? null;
  const model = settings.model;

  // The model list, again whenever the API key changes (a wrong key is the usual reason it fails).
  useEffect(() => {
    const timer = window.setTimeout(() => {
      listModels(settings.apiKey)
        .then((list) => {
          const ids = list.map((m) => m.id);
          setModels(list);
          setModelsError("");
          setSettings((s) => (ids.includes(s.model) ? s : { ...s, model: ids[0] ?? "" }));
        })
        .catch((e: Error) => {
          setModels([]);
          setModelsError(
            e instanceof ApiError && e.status === 401
              ? "The gateway asks for an API key: set it below."
              : `Cannot list the models: ${e.message}`,
          );
        });
    }, 250);
    return () => window.clearTimeout(timer);
  }, [settings.apiKey]);

  // Saved shortly after each change (not on every streamed token), and when the page goes away
  // with a change not saved yet (only then: another tab may have saved since).
  const chatsRef = useRef(chats);
  const savedRef = useRef(chats);
  chatsRef.current = chats;
  useEffect(() => {
    const save = () => {
      if (chatsRef.current === savedRef.current) return;
      savedRef.current = chatsRef.current;
      setStorageFailed(!saveChats(chatsRef.current));
    };
    const timer = window.setTimeout(save, saveDelayMs);
    window.addEventListener("pagehide", save);
    return () => {
      window.clearTimeout(timer);
      window.removeEventListener("pagehide", save);
    };
  }, [chats]);
  useEffect(() => {
    if (!saveSettings(settings)) setStorageFailed(true);
  }, [settings]);

  // Braces: newer browsers return a promise from scrollIntoView, and an effect may only return a cleanup.
  useEffect(() => {
    endRef.current?.scrollIntoView({ block: "end" });
  }, [active?.turns]);

  const updateConversation = (id: string, change: (c: Conversation) => Conversation) =>
    setChats((all) => ({ ...all, conversations: all.conversations.map((c) => (c.id === id ? change(c) : c)) }));
  const updateTurn = (conversationId: string, turnId: string, change: (t: Turn) => Turn) =>
    updateConversation(conversationId, (c) => ({ ...c, turns: c.turns.map((t) => (t.id === turnId ? change(t) : t)) }));

  // Streams the answer to the question at turns[questionIndex] into the answer turn after it.
  async function answer(conversation: Conversation, questionIndex: number) {
    const question = conversation.turns[questionIndex];
    const answerTurn = conversation.turns[questionIndex + 1];
    const history = exchanges(conversation.turns, conversation.sentFrom, questionIndex);
    const controller = new AbortController();
    setStreaming({ conversationId: conversation.id, controller });
    const started = performance.now();
    try {
      const fitted = await streamWithinContext({
        apiKey: settings.apiKey,
        model,
        contextLength: models.find((m) => m.id === model)?.contextLength ?? null,
        system: settings.system,
        history,
        question: question.content,
        settings,
        onText: (piece) => updateTurn(conversation.id, answerTurn.id, (t) => ({ ...t, content: t.content + piece })),
        signal: controller.signal,
      });
      const seconds = (performance.now() - started) / 1000;
      const tokens = fitted.result.completionTokens;
      const notes = [
        fitted.result.finishReason ?? "done",
        ...(tokens != null ? [`${tokens} tokens`, `${(tokens / seconds).toFixed(1)} tok/s`] : []),
        ...(fitted.maxTokens < settings.maxTokens ? [`max tokens lowered to ${fitted.maxTokens} to fit the context`] : []),
      ];
      updateTurn(conversation.id, answerTurn.id, (t) => ({ ...t, state: "done", note: notes.join(" · ") }));
      if (fitted.dropped > 0) {
        const firstKept = history[fitted.dropped]?.index ?? questionIndex;
        updateConversation(conversation.id, (c) => ({ ...c, sentFrom: Math.max(c.sentFrom, firstKept) }));
      }
    } catch (e) {
      if (controller.signal.aborted) {
        updateTurn(conversation.id, answerTurn.id, (t) => ({
          ...t,
          state: "stopped",
          note: t.content ? "stopped" : "stopped before the first word",
        }));
      } else {
        updateTurn(conversation.id, answerTurn.id, (t) => ({ ...t, state: "failed", note: (e as Error).message }));
      }
    } finally {
      setStreaming(null);
    }
  }

  function send(event?: FormEvent) {
    event?.preventDefault();
    const text = draft.trim();
    if (!text || streaming || !model) return;
    const base = active ?? newConversation();
    const conversation: Conversation = {
      ...base,
      title: base.turns.length === 0 ? titleOf(text) : base.title,
      turns: [
        ...base.turns,
        { id: newId(), role: "user", content: text },
        { id: newId(), role: "assistant", content: "", state: "streaming" },
      ],
      updatedAt: Date.now(),
    };
    setChats((all) => ({
      activeId: conversation.id,
      conversations: [...all.conversations.filter((c) => c.id !== conversation.id), conversation],
    }));
    setDraft("");
    void answer(conversation, conversation.turns.length - 2);
  }

  function retry(conversation: Conversation, answerIndex: number) {
    if (streaming || !model) return;
    const turns = conversation.turns.map((t, i) =>
      i === answerIndex ? { ...t, content: "", state: "streaming" as const, note: undefined } : t,
    );
    const updated = { ...conversation, turns, updatedAt: Date.now() };
    updateConversation(conversation.id, () => updated);
    void answer(updated, answerIndex - 1);
  }

  function openConversation(id: string) {
    setChats((all) => ({ ...all, activeId: id }));
    setShowChats(false);
  }

  function startConversation() {
    setChats((all) => ({ ...all, activeId: null }));
    setShowChats(false);
  }

  function deleteConversation(id: string) {
    if (streaming?.conversationId === id) streaming.controller.abort();
    setChats((all) => ({
      activeId: all.activeId === id ? null : all.activeId,
      conversations: all.conversations.filter((c) => c.id !== id),
    }));
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send();
    }
  }

  const changeSettings = (change: Partial<ChatSettings>) => setSettings((s) => ({ ...s, ...change }));

  return (
    <div className={`chat-layout${showSettings ? " with-settings" : ""}${showChats ? " with-chats" : ""}`}>
      <ConversationList conversations={chats.conversations} activeId={chats.activeId}
        busyId={streaming?.conversationId ?? null} onOpen={openConversation} onNew={startConversation}
        onDelete={deleteConversation} />

      <section className="panel conversation" aria-label="Conversation">
        <div className="chat-head">
          <button type="button" className="ghost small chats-toggle" aria-expanded={showChats}
            onClick={() => setShowChats((v) => !v)}>
            Chats
          </button>
          <h2 className="chat-title">{active?.title ?? "New chat"}</h2>
          <button type="button" className="ghost small" aria-expanded={showSettings} aria-controls="chat-settings"
            onClick={() => setShowSettings((v) => !v)}>
            Settings
          </button>
        </div>
        {storageFailed && (
          <div className="banner error-text" role="alert">
            This browser did not save the conversations (its storage is full or disabled).
          </div>
        )}
        <div className="messages" data-testid="messages">
          {(!active || active.turns.length === 0) && (
            <div className="empty">
              <div className="empty-mark" aria-hidden="true" />
              <h1>Ask the swarm</h1>
              <p>Answers stream token by token from the machines serving {model || "the model"}.</p>
            </div>
          )}
          {active?.turns.map((t, i) => (
            <div key={t.id} className="turn">
              {i === active.sentFrom && i > 0 && (
                <div className="context-cut" role="note">
                  The messages above are no longer sent: the model's context is full.
                </div>
              )}
              <Message turn={t} streaming={t.state === "streaming"}
                onRetry={t.state === "failed" && !streaming ? () => retry(active, i) : undefined} />
            </div>
          ))}
          <div ref={endRef} />
        </div>
        <form className="composer" onSubmit={send}>
          <textarea rows={2} value={draft} placeholder="Send a message" title="Enter sends; Shift+Enter starts a new line"
            onChange={(e) => setDraft(e.target.value)} onKeyDown={onKeyDown} aria-label="Message" />
          {streaming ? (
            <button type="button" className="stop" onClick={() => streaming.controller.abort()}>
              Stop
            </button>
          ) : (
            <button type="submit" className="primary" disabled={!draft.trim() || !model}>
              Send
            </button>
          )}
        </form>
      </section>

      {showSettings && (
        <SettingsPanel settings={settings} models={models.map((m) => m.id)} modelsError={modelsError} onChange={changeSettings}
          onClose={() => setShowSettings(false)} />
      )}
    </div>
  );
}

function Message(props: { turn: Turn; streaming: boolean; onRetry?: () => void }) {
  const t = props.turn;
  const failed = t.state === "failed";
  return (
    <div className={`message ${t.role}${failed ? " failed" : ""}`}>
      <div className="avatar" aria-hidden="true">{t.role === "user" ? "You" : "AI"}</div>
      <div className="bubble">
        {t.role === "user" ? (
          <div className="text plain">{t.content}</div>
        ) : t.content ? (
          <Markdown source={t.content} testId="answer" />
        ) : props.streaming ? (
          <div className="text" data-testid="answer"><span className="typing" /></div>
        ) : null}
        {failed ? (
          <div className="failure" role="alert" data-testid="failure">
            <span>{t.note || "the answer failed"}</span>
            {props.onRetry && (
              <button type="button" className="ghost small" onClick={props.onRetry}>
                Retry
              </button>
            )}
          </div>
        ) : (
          (t.note || (t.role === "assistant" && t.content && !props.streaming)) && (
            <div className="note">
              {t.note}
              {t.role === "assistant" && t.content && !props.streaming && (
                <button type="button" className="link" onClick={() => void copyText(t.content)}>
                  Copy
                </button>
              )}
            </div>
          )
        )}
      </div>
    </div>
  );
}
