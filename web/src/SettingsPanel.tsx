// The chat's settings: the model, the system prompt, sampling, and the gateway's API key.
import { ChatSettings } from "./localStore";

export function SettingsPanel(props: {
  settings: ChatSettings;
  models: string[];
  modelsError: string;
  onChange: (change: Partial<ChatSettings>) => void;
  onClose: () => void;
}) {
  const { settings, onChange } = props;
  return (
    <aside id="chat-settings" className="panel settings" aria-label="Settings">
      <div className="panel-title">
        <h2>Settings</h2>
        <button type="button" className="ghost small" onClick={props.onClose}>
          Done
        </button>
      </div>
      <label>
        Model
        <select value={settings.model} onChange={(e) => onChange({ model: e.target.value })} data-testid="model">
          {props.models.map((m) => (
            <option key={m}>{m}</option>
          ))}
        </select>
      </label>
      {props.modelsError && <p className="error-text" role="alert">{props.modelsError}</p>}
      <label>
        System prompt
        <textarea rows={3} value={settings.system} placeholder="You are a helpful assistant."
          onChange={(e) => onChange({ system: e.target.value })} />
      </label>
      <Slider label="Temperature" min={0} max={2} step={0.05} value={settings.temperature}
        onChange={(v) => onChange({ temperature: v })} />
      <Slider label="Top-p" min={0} max={1} step={0.01} value={settings.topP} onChange={(v) => onChange({ topP: v })} />
      <label>
        Max tokens
        <input type="number" min={1} value={settings.maxTokens}
          onChange={(e) => onChange({ maxTokens: Math.max(1, Math.round(Number(e.target.value)) || 1) })} />
        <span className="hint">Lowered for an answer when the model's context cannot hold it.</span>
      </label>
      <label>
        Seed
        <input type="number" placeholder="random" value={settings.seed} onChange={(e) => onChange({ seed: e.target.value })} />
      </label>
      <label>
        API key
        <input type="password" autoComplete="off" placeholder="none" value={settings.apiKey}
          onChange={(e) => onChange({ apiKey: e.target.value })} />
        <span className="hint">Sent as a bearer token to this gateway; kept in this browser only.</span>
      </label>
    </aside>
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
