// Tokens per second over time as an SVG area chart, drawn by hand: the viewBox is fixed and the
// SVG scales to its container's width. On a phone the viewBox is narrower (so the labels stay
// legible once scaled down) with fewer time labels.
import { useEffect, useState } from "react";

interface Point {
  t: number;
  tps: number;
}

const phone = "(max-width: 600px)";
const pad = { left: 44, right: 12, top: 12, bottom: 26 };

// A "nice" axis maximum: 1, 2 or 5 times a power of ten, at least `value`.
function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

// Seconds on the axis while the history is short enough for them to differ.
function clock(unixSeconds: number, spanSeconds: number): string {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], {
    hour: "2-digit", minute: "2-digit", ...(spanSeconds < 600 ? { second: "2-digit" } : {}),
  });
}

function useMediaQuery(query: string): boolean {
  const [matches, setMatches] = useState(() => window.matchMedia(query).matches);
  useEffect(() => {
    const list = window.matchMedia(query);
    const onChange = () => setMatches(list.matches);
    list.addEventListener("change", onChange);
    return () => list.removeEventListener("change", onChange);
  }, [query]);
  return matches;
}

export function ThroughputChart({ points }: { points: Point[] }) {
  const narrow = useMediaQuery(phone);
  const width = narrow ? 420 : 1000;
  const height = narrow ? 200 : 240;
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const max = niceCeiling(Math.max(0, ...points.map((p) => p.tps)));
  const t0 = points.length ? points[0].t : 0;
  const t1 = points.length ? points[points.length - 1].t : 1;
  const x = (t: number) => pad.left + (t1 === t0 ? innerW : ((t - t0) / (t1 - t0)) * innerW);
  const y = (v: number) => pad.top + innerH - (v / max) * innerH;
  const line = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.tps).toFixed(1)}`).join("");
  const area = points.length
    ? `${line}L${x(t1).toFixed(1)},${y(0)}L${x(t0).toFixed(1)},${y(0)}Z`
    : "";
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * max);
  const fractions = narrow ? [0, 0.5, 1] : [0, 0.25, 0.5, 0.75, 1];
  const timeTicks = points.length > 1 ? fractions.map((f) => t0 + f * (t1 - t0)) : [];

  return (
    <svg className="chart" viewBox={`0 0 ${width} ${height}`} role="img" aria-label="Throughput over time">
      <defs>
        <linearGradient id="tps-fill" x1="0" y1="0" x2="0" y2="1">
          <stop offset="0%" stopColor="var(--accent)" stopOpacity="0.35" />
          <stop offset="100%" stopColor="var(--accent)" stopOpacity="0.02" />
        </linearGradient>
      </defs>
      {ticks.map((v) => (
        <g key={v}>
          <line x1={pad.left} x2={width - pad.right} y1={y(v)} y2={y(v)} className="grid" />
          <text x={pad.left - 8} y={y(v) + 4} textAnchor="end" className="axis">
            {Number(v.toPrecision(3))}
          </text>
        </g>
      ))}
      {timeTicks.map((t, i) => (
        <text key={i} x={x(t)} y={height - 6} textAnchor={i === 0 ? "start" : i === fractions.length - 1 ? "end" : "middle"}
          className="axis">
          {clock(t, t1 - t0)}
        </text>
      ))}
      {area && <path d={area} fill="url(#tps-fill)" />}
      {line && <path d={line} className="line" />}
      {points.length === 0 && (
        <text x={width / 2} y={height / 2} textAnchor="middle" className="axis">
          no data yet
        </text>
      )}
    </svg>
  );
}
