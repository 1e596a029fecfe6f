// The swarm dashboard: polls /v1/swarm and shows the nodes (alive or not, relayed or direct, their
// sessions), each model's block coverage (gaps in red) and the generated tokens per second over time.
import { useEffect, useState } from "react";
import { SwarmView, fetchSwarm } from "./api";
import { CoverageBar } from "./CoverageBar";
import { loadSettings } from "./localStore";
import { ThroughputChart } from "./ThroughputChart";

const pollMs = 2000;

export function SwarmPage() {
  const [view, setView] = useState<SwarmView | null>(null);
  const [error, setError] = useState("");

  useEffect(() => {
    const controller = new AbortController();
    const apiKey = loadSettings().apiKey;
    let timer = 0;
    const poll = async () => {
      try {
        setView(await fetchSwarm(apiKey, controller.signal));
        setError("");
      } catch (e) {
        if (!controller.signal.aborted) setError((e as Error).message);
      }
      if (!controller.signal.aborted) timer = window.setTimeout(poll, pollMs);
    };
    void poll();
    return () => {
      controller.abort();
      window.clearTimeout(timer);
    };
  }, []);

  const live = view?.nodes.filter((n) => n.alive !== false) ?? [];
  // What the gateway generated lately (the nodes' figures are their capacities).
  const history = view?.throughput_history ?? [];
  const totalTps = history.length ? history[history.length - 1].tps : 0;
  const sessions = live.reduce((sum, n) => sum + n.sessions, 0);
  const peak = Math.max(0, ...(view?.throughput_history.map((p) => p.tps) ?? []));

  return (
    <div className="swarm">
      {error && <div className="banner error-text">Cannot reach the gateway: {error}</div>}
      <div className="stats">
        <Stat label="Nodes online" value={view ? String(live.length) : "–"} />
        <Stat label="Models served" value={view ? String(view.models.length) : "–"} />
        <Stat label="Throughput" value={view ? `${totalTps.toFixed(1)}` : "–"} unit="tok/s" />
        <Stat label="Peak (10 min)" value={view ? peak.toFixed(1) : "–"} unit="tok/s" />
        <Stat label="Active sessions" value={view ? String(sessions) : "–"} />
      </div>

      <section className="panel">
        <div className="panel-head">
          <h2>Throughput</h2>
          <span className="muted">generated tokens per second, last 10 minutes</span>
        </div>
        <ThroughputChart points={view?.throughput_history ?? []} />
      </section>

      <section className="panel">
        <div className="panel-head">
          <h2>Block coverage</h2>
          <span className="muted">one cell per transformer block, coloured by replicas</span>
        </div>
        {view?.models.map((m) => <CoverageBar key={m.name} model={m} />)}
        {view && view.models.length === 0 && <p className="muted">No models are served.</p>}
      </section>

      <section className="panel">
        <div className="panel-head">
          <h2>Nodes</h2>
          <span className="muted">live, refreshed every {pollMs / 1000} s</span>
        </div>
        <div className="table-wrap">
          <table className="nodes" data-testid="nodes">
            <thead>
              <tr>
                <th>Peer</th>
                <th>Address</th>
                <th>Model</th>
                <th>Blocks</th>
                <th>Route</th>
                <th className="num">Throughput</th>
                <th className="num">Sessions</th>
                <th className="num">Reputation</th>
              </tr>
            </thead>
            <tbody>
              {view?.nodes.map((n) => (
                <tr key={n.peer_id + n.address} className={n.alive === false ? "down" : undefined}>
                  <td data-label="Peer">
                    <span title={n.alive === false ? "did not answer the last probe" : "alive"}>
                      <span className={n.alive === false ? "dot down" : "dot"} aria-hidden="true" />
                      <code>{n.peer_id.length > 16 ? `${n.peer_id.slice(0, 8)}…${n.peer_id.slice(-6)}` : n.peer_id}</code>
                    </span>
                  </td>
                  <td data-label="Address">{n.address || "—"}</td>
                  <td data-label="Model">{n.model}</td>
                  <td data-label="Blocks">
                    {n.blocks[0]}–{n.blocks[1] - 1}
                  </td>
                  <td data-label="Route">
                    {n.route ?? "local"}
                    {n.alive && n.rtt_ms > 0 ? ` · ${n.rtt_ms.toFixed(1)} ms` : ""}
                  </td>
                  <td className="num" data-label="Throughput">{n.throughput_tps.toFixed(1)} tok/s</td>
                  <td className="num" data-label="Sessions">
                    {n.sessions}
                    {n.max_sessions ? ` / ${n.max_sessions}` : ""}
                  </td>
                  <td className="num" data-label="Reputation" data-testid="reputation">
                    {n.excluded ? (
                      <span
                        className="badge excluded"
                        title={`since ${new Date(n.excluded.since * 1000).toLocaleString()}`}
                      >
                        excluded: {n.excluded.reason}
                      </span>
                    ) : n.reputation !== undefined ? (
                      n.reputation.toFixed(2)
                    ) : (
                      "—"
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
    </div>
  );
}

function Stat(props: { label: string; value: string; unit?: string }) {
  return (
    <div className="stat">
      <div className="stat-label">{props.label}</div>
      <div className="stat-value">
        {props.value}
        {props.unit && <span className="stat-unit"> {props.unit}</span>}
      </div>
    </div>
  );
}
