// A model's blocks as a row of cells, each coloured by how many nodes serve it: none (a gap the
// swarm must fill), one (no redundancy), two or more.
import { SwarmModel } from "./api";

function level(replicas: number): string {
  if (replicas <= 0) return "none";
  if (replicas === 1) return "one";
  if (replicas === 2) return "two";
  return "many";
}

// "3-5, 9" for [3, 4, 5, 9].
function runs(blocks: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < blocks.length; ) {
    let j = i;
    while (j + 1 < blocks.length && blocks[j + 1] === blocks[j] + 1) j++;
    parts.push(j === i ? String(blocks[i]) : `${blocks[i]}-${blocks[j]}`);
    i = j + 1;
  }
  return parts.join(", ");
}

export function CoverageBar({ model }: { model: SwarmModel }) {
  const covered = model.coverage.filter((c) => c > 0).length;
  const min = model.coverage.length ? Math.min(...model.coverage) : 0;
  const missing = model.missing ?? model.coverage.flatMap((c, b) => (c > 0 ? [] : [b]));
  return (
    <div className="coverage">
      <div className="coverage-head">
        <strong>{model.name}</strong>
        <span className="muted">
          {covered}/{model.n_layer} blocks served · at least {min} {min === 1 ? "replica" : "replicas"}
        </span>
      </div>
      {model.cid && <div className="muted cid">CID <code>{model.cid}</code></div>}
      {missing.length > 0 && (
        <div className="error-text gap" data-testid="coverage-gap">
          Incomplete: no live node serves {missing.length === 1 ? "block" : "blocks"} {runs(missing)}; requests for
          this model are refused until they are covered.
        </div>
      )}
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
