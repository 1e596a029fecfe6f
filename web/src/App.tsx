// The shell: a top bar with the two pages, chosen by the URL's hash (#/chat, #/swarm) so the
// gateway serves one static index.html for both.
import { useEffect, useState } from "react";
import { ChatPage } from "./ChatPage";
import { SwarmPage } from "./SwarmPage";

type Page = "chat" | "swarm";

function pageFromHash(): Page {
  return window.location.hash.startsWith("#/swarm") ? "swarm" : "chat";
}

export function App() {
  const [page, setPage] = useState<Page>(pageFromHash);
  useEffect(() => {
    const onHash = () => setPage(pageFromHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  return (
    <div className="app">
      <header className="topbar">
        <a className="brand" href="#/chat">
          <span className="brand-mark" aria-hidden="true" />
          OmniNode
        </a>
        <nav className="tabs" aria-label="Pages">
          <a href="#/chat" className={page === "chat" ? "tab active" : "tab"}>
            Chat
          </a>
          <a href="#/swarm" className={page === "swarm" ? "tab active" : "tab"}>
            Swarm
          </a>
        </nav>
      </header>
      <main className="content">{page === "chat" ? <ChatPage /> : <SwarmPage />}</main>
    </div>
  );
}
