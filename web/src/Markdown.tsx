// An answer rendered as Markdown. Model output is untrusted: raw HTML in it is shown as text
// (markdown-it with html off), links may only use safe schemes (markdown-it's check) and open in a
// new tab, images are not rendered (a remote image would leak the conversation through its URL),
// and DOMPurify sanitizes the result in case any of that ever fails. Code blocks are highlighted
// and get a copy button.
import DOMPurify from "dompurify";
import type { HLJSApi } from "highlight.js";
import MarkdownIt, { type MarkdownIt as MarkdownRenderer } from "markdown-it";
import { MouseEvent, useEffect, useMemo, useState } from "react";

// highlight.js is a third of the UI's code: it loads on the first code block, which is shown plain
// until then.
let hljs: HLJSApi | null = null;
let hljsLoading: Promise<void> | null = null;
function loadHighlighter(): Promise<void> {
  hljsLoading ??= import("highlight.js/lib/common").then((m) => {
    hljs = m.default;
  });
  return hljsLoading;
}

const markdown: MarkdownRenderer = new MarkdownIt({
  html: false,
  linkify: true,
  breaks: true,
  highlight(code, language) {
    if (hljs && language && hljs.getLanguage(language)) {
      try {
        return hljs.highlight(code, { language, ignoreIllegals: true }).value;
      } catch {
        // markdown-it escapes and shows the code as it is
      }
    }
    return "";
  },
});
markdown.disable("image");

const fence = markdown.renderer.rules.fence!;
markdown.renderer.rules.fence = (tokens, idx, options, env, self) => {
  const language = tokens[idx].info.trim().split(/\s+/)[0];
  return (
    `<div class="code-block"><div class="code-head"><span>${markdown.utils.escapeHtml(language || "text")}</span>` +
    `<button type="button" class="copy-code">Copy</button></div>${fence(tokens, idx, options, env, self)}</div>`
  );
};
// Wide tables scroll inside the message instead of widening the page.
markdown.renderer.rules.table_open = () => '<div class="table-scroll"><table>';
markdown.renderer.rules.table_close = () => "</table></div>";

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

export function renderMarkdown(source: string): string {
  return DOMPurify.sanitize(markdown.render(source), { ADD_ATTR: ["target"], FORBID_TAGS: ["img", "style", "form"] });
}

// The clipboard API needs a secure context (https or localhost); a gateway on a LAN address is
// plain http, where the older selection-based copy still works.
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the selection
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  return ok;
}

const hasCode = (source: string) => /^\s*(```|~~~)/m.test(source);

export function Markdown(props: { source: string; testId?: string }) {
  const [highlighter, setHighlighter] = useState(hljs);
  const wantsHighlighter = highlighter === null && hasCode(props.source);
  useEffect(() => {
    if (!wantsHighlighter) return;
    let live = true;
    loadHighlighter().then(
      () => live && setHighlighter(hljs),
      () => {}, // offline or blocked: the code stays plain
    );
    return () => {
      live = false;
    };
  }, [wantsHighlighter]);
  // highlighter: rendered again once highlight.js has loaded.
  const html = useMemo(() => renderMarkdown(props.source), [props.source, highlighter]);

  async function onClick(e: MouseEvent<HTMLDivElement>) {
    const button = (e.target as HTMLElement).closest("button.copy-code");
    const code = button?.closest(".code-block")?.querySelector("pre code");
    if (!button || !code) return;
    const ok = await copyText(code.textContent ?? "");
    button.textContent = ok ? "Copied" : "Copy failed";
    window.setTimeout(() => (button.textContent = "Copy"), 1500);
  }

  return <div className="text markdown" data-testid={props.testId} onClick={onClick}
    dangerouslySetInnerHTML={{ __html: html }} />;
}
