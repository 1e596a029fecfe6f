// The gateway's API as the UI uses it: the model list, streamed chat completions, the swarm view.
// Every call takes the API key from the settings (empty: none) and sends it as a bearer token.
import { readServerSentEvents } from "./sse";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface SamplingSettings {
  temperature: number;
  topP: number;
  maxTokens: number;
  seed: string; // empty: a fresh one per request
}

export interface SwarmNode {
  peer_id: string;
  address: string;
  model: string;
  blocks: [number, number];
  throughput_tps: number;
  sessions: number;
  max_sessions: number; // 0: unknown
  route: "direct" | "relay" | "local";
  alive: boolean; // answered the gateway's last probe; only live nodes count for coverage
  rtt_ms: number;
  reputation?: number; // the gateway's score of the node, 0..1 (absent from older gateways)
  excluded?: { reason: string; since: number } | null; // found faulty: never routed to
}

export interface SwarmModel {
  name: string;
  cid: string; // empty when no node serves it from a store
  n_layer: number;
  coverage: number[];
  missing: number[]; // blocks no live node serves
}

export interface SwarmView {
  nodes: SwarmNode[];
  models: SwarmModel[];
  throughput_history: { t: number; tps: number }[];
  updated_at: number;
}

// An error the gateway answered (status, and OpenAI's error.code and error.param when it gave them),
// or status 0 when it could not be reached.
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

async function errorOf(response: Response): Promise<ApiError> {
  try {
    const error = (await response.json())?.error;
    return new ApiError(
      error?.message ?? `${response.status} ${response.statusText}`,
      response.status,
      typeof error?.code === "string" ? error.code : null,
      typeof error?.param === "string" ? error.param : null,
    );
  } catch {
    return new ApiError(`${response.status} ${response.statusText}`, response.status);
  }
}

function headers(apiKey: string, json = false): HeadersInit {
  const h: Record<string, string> = {};
  if (json) h["Content-Type"] = "application/json";
  const key = apiKey.trim();
  if (key !== "") {
    // fetch refuses other header bytes with a TypeError that would read as "cannot reach".
    if (!/^[\x21-\x7e]+$/.test(key)) throw new ApiError("the API key may only hold printable ASCII characters", 0);
    h.Authorization = `Bearer ${key}`;
  }
  return h;
}

// fetch, with "cannot connect" turned into an ApiError (a TypeError says nothing useful).
async function call(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    if (init.signal?.aborted) throw e;
    throw new ApiError(`cannot reach the gateway (${(e as Error).message})`, 0);
  }
}

export interface ModelInfo {
  id: string;
  contextLength: number | null; // positions per session (prompt and answer), when the gateway says
}

export async function listModels(apiKey: string): Promise<ModelInfo[]> {
  const response = await call("/v1/models", { headers: headers(apiKey) });
  if (!response.ok) throw await errorOf(response);
  const body = await response.json();
  return (body.data as { id: string; context_length?: unknown }[]).map((m) => ({
    id: m.id,
    contextLength: typeof m.context_length === "number" && m.context_length > 1 ? m.context_length : null,
  }));
}

export async function fetchSwarm(apiKey: string, signal?: AbortSignal): Promise<SwarmView> {
  const response = await call("/v1/swarm", { headers: headers(apiKey), signal });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

export interface StreamResult {
  finishReason: string | null;
  completionTokens: number | null;
}

// Streams a chat completion, calling onText with each piece. Aborting `signal` closes the
// connection, which makes the gateway cancel the generation. A stream that ends without its
// "[DONE]" (the gateway went away mid-answer) is an error, not a short answer.
export async function streamChat(
  apiKey: string,
  model: string,
  messages: ChatMessage[],
  settings: SamplingSettings,
  onText: (text: string) => void,
  signal: AbortSignal,
): Promise<StreamResult> {
  const request: Record<string, unknown> = {
    model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: settings.temperature,
    top_p: settings.topP,
    max_tokens: settings.maxTokens,
  };
  if (settings.seed.trim() !== "") request.seed = Number(settings.seed);
  const response = await call("/v1/chat/completions", {
    method: "POST",
    headers: headers(apiKey, true),
    body: JSON.stringify(request),
    signal,
  });
  if (!response.ok || !response.body) throw await errorOf(response);
  const result: StreamResult = { finishReason: null, completionTokens: null };
  let done = false;
  try {
    for await (const data of readServerSentEvents(response.body)) {
      if (data === "[DONE]") {
        done = true;
        break;
      }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(chunk.error.message, 500, chunk.error.code ?? null);
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) onText(choice.delta.content);
      if (choice?.finish_reason) result.finishReason = choice.finish_reason;
      if (chunk.usage) result.completionTokens = chunk.usage.completion_tokens;
    }
  } catch (e) {
    if (e instanceof ApiError || signal.aborted) throw e;
    throw new ApiError(`the answer was cut off (${(e as Error).message})`, 0);
  }
  if (!done) throw new ApiError("the answer was cut off: the gateway closed the stream", 0);
  return result;
}
