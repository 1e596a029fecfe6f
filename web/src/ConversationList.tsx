// The saved conversations, newest first: open one, start a new one, delete one.
import { Conversation } from "./conversation";

export function ConversationList(props: {
  conversations: Conversation[];
  activeId: string | null;
  busyId: string | null;
  onOpen: (id: string) => void;
  onNew: () => void;
  onDelete: (id: string) => void;
}) {
  const sorted = [...props.conversations].sort((a, b) => b.updatedAt - a.updatedAt);
  return (
    <aside className="panel chats" aria-label="Conversations">
      <button type="button" className="primary new-chat" onClick={props.onNew}>
        + New chat
      </button>
      <ul className="chat-list" data-testid="conversations">
        {sorted.map((c) => (
          <li key={c.id} className={c.id === props.activeId ? "active" : undefined}>
            <button type="button" className="chat-item" onClick={() => props.onOpen(c.id)}
              aria-current={c.id === props.activeId ? "true" : undefined}>
              {c.id === props.busyId && <span className="live-dot" aria-label="answering" />}
              {c.title}
            </button>
            <button type="button" className="delete" aria-label={`Delete ${c.title}`} title="Delete"
              onClick={() => props.onDelete(c.id)}>
              ×
            </button>
          </li>
        ))}
        {sorted.length === 0 && <li className="muted none">No conversations yet.</li>}
      </ul>
    </aside>
  );
}
