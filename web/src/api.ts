// The gateway's API as the UI uses it: the model list, streamed chat completions, the swarm view.
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
}

export interface SwarmModel {
  name: string;
  n_layer: number;
  coverage: number[];
}

export interface SwarmView {
  nodes: SwarmNode[];
  models: SwarmModel[];
  throughput_history: { t: number; tps: number }[];
  updated_at: number;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

async function errorOf(response: Response): Promise<ApiError> {
  try {
    const body = await response.json();
    return new ApiError(body?.error?.message ?? response.statusText, response.status);
  } catch {
    return new ApiError(`${response.status} ${response.statusText}`, response.status);
  }
}

export async function listModels(): Promise<string[]> {
  const response = await fetch("/v1/models");
  if (!response.ok) throw await errorOf(response);
  const body = await response.json();
  return (body.data as { id: string }[]).map((m) => m.id);
}

export async function fetchSwarm(signal?: AbortSignal): Promise<SwarmView> {
  const response = await fetch("/v1/swarm", { signal });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

export interface StreamResult {
  finishReason: string | null;
  completionTokens: number | null;
}

// Streams a chat completion, calling onText with each piece. Aborting `signal` closes the
// connection, which makes the gateway cancel the generation.
export async function streamChat(
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
  const response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request),
    signal,
  });
  if (!response.ok || !response.body) throw await errorOf(response);
  const result: StreamResult = { finishReason: null, completionTokens: null };
  for await (const data of readServerSentEvents(response.body)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new ApiError(chunk.error.message, 500);
    const choice = chunk.choices?.[0];
    if (choice?.delta?.content) onText(choice.delta.content);
    if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    if (chunk.usage) result.completionTokens = chunk.usage.completion_tokens;
  }
  return result;
}
