// A model's blocks as a row of cells, each coloured by how many nodes serve it: none (a gap the
// swarm must fill), one (no redundancy), two or more.
import { SwarmModel } from "./api";

function level(replicas: number): string {
  if (replicas <= 0) return "none";
  if (replicas === 1) return "one";
  if (replicas === 2) return "two";
  return "many";
}

export function CoverageBar({ model }: { model: SwarmModel }) {
  const covered = model.coverage.filter((c) => c > 0).length;
  const min = model.coverage.length ? Math.min(...model.coverage) : 0;
  return (
    <div className="coverage">
      <div className="coverage-head">
        <strong>{model.name}</strong>
        <span className="muted">
          {covered}/{model.n_layer} blocks served · at least {min} {min === 1 ? "replica" : "replicas"}
        </span>
      </div>
      <div className="cells" role="img" aria-label={`Coverage of ${model.name}`}
        style={{ gridTemplateColumns: `repeat(${Math.max(1, model.coverage.length)}, minmax(0, 1fr))` }}>
        {model.coverage.map((replicas, block) => (
          <div key={block} className={`cell ${level(replicas)}`} title={`block ${block}: ${replicas} replicas`}>
            {model.coverage.length <= 48 ? block : ""}
          </div>
        ))}
      </div>
      <div className="legend">
        <span><i className="cell none" /> 0</span>
        <span><i className="cell one" /> 1</span>
        <span><i className="cell two" /> 2</span>
        <span><i className="cell many" /> 3+ replicas</span>
      </div>
    </div>
  );
}
