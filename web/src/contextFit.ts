// Fitting a request into the model's context. Only the gateway can count tokens (with the model's
// tokenizer and chat template), so its verdict decides; the context length it reports in
// /v1/models only caps max_tokens before the first try (prompt and answer share the context).
// While it rejects a request with code "context_length_exceeded":
//  - the prompt is too long (param "messages"): the oldest exchange is dropped;
//  - the prompt fits but not max_tokens more: max_tokens is halved down to a floor (at most
//    answerFloor), then the oldest exchanges are dropped to make room, and only when none is left
//    does max_tokens go below the floor.
// The system prompt and the question are always sent. A rejection costs one round trip and starts
// no generation; there are at most history.length + 2 log2(max_tokens) of them.
import { ApiError, SamplingSettings, StreamResult, streamChat } from "./api";
import { Exchange, requestMessages } from "./conversation";

export const answerFloor = 256;

export interface FittedAnswer {
  result: StreamResult;
  dropped: number; // exchanges left out, oldest first
  maxTokens: number; // as sent: settings.maxTokens or lower
}

export async function streamWithinContext(args: {
  apiKey: string;
  model: string;
  contextLength: number | null;
  system: string;
  history: Exchange[];
  question: string;
  settings: SamplingSettings;
  onText: (text: string) => void;
  signal: AbortSignal;
}): Promise<FittedAnswer> {
  const ceiling = args.contextLength === null ? args.settings.maxTokens : Math.max(1, args.contextLength - 1);
  const floor = Math.min(args.settings.maxTokens, ceiling, answerFloor);
  let dropped = 0;
  let maxTokens = Math.min(args.settings.maxTokens, ceiling);
  for (;;) {
    try {
      const messages = requestMessages(args.system, args.history.slice(dropped), args.question);
      const result = await streamChat(args.apiKey, args.model, messages, { ...args.settings, maxTokens }, args.onText,
        args.signal);
      return { result, dropped, maxTokens };
    } catch (e) {
      if (!(e instanceof ApiError) || e.code !== "context_length_exceeded") throw e;
      const canDrop = dropped < args.history.length;
      if (e.param === "max_tokens" && maxTokens > floor) maxTokens = Math.max(floor, Math.floor(maxTokens / 2));
      else if (canDrop) dropped++;
      else if (e.param === "max_tokens" && maxTokens > 1) maxTokens = Math.floor(maxTokens / 2);
      else throw e; // the system prompt and the question alone do not fit
    }
  }
}
