/**
 * The web demo's rate chart: counts of events per second over the last minute, and a canvas
 * chart of them that scrolls with time. No dependency.
 *
 * @module
 */

/** How many seconds the chart shows. */
export const WINDOW_SECONDS = 60;

/** Counts per second over the last {@linkcode WINDOW_SECONDS} seconds, in a ring. */
export class Rate {
  readonly #size = WINDOW_SECONDS + 2;
  readonly #counts = new Float64Array(this.#size);
  readonly #seconds = new Float64Array(this.#size).fill(-1);

  /** Counts `n` events at `now` (milliseconds since the epoch). */
  add(now: number, n = 1): void {
    const second = Math.floor(now / 1000);
    const slot = second % this.#size;
    if (this.#seconds[slot] !== second) {
      this.#seconds[slot] = second;
      this.#counts[slot] = 0;
    }
    this.#counts[slot] += n;
  }

  /** The events counted in `second` (seconds since the epoch); 0 once it left the window. */
  at(second: number): number {
    const slot = second % this.#size;
    return this.#seconds[slot] === second ? this.#counts[slot] : 0;
  }
}

/** One line of the chart. */
export interface Series {
  rate: Rate;
  color: string;
  /** Fill the area under the line. */
  fill: boolean;
}

const PAD = { left: 38, right: 12, top: 10, bottom: 22 };

/** The smallest of 1, 2, 2.5, 5 × 10^n that is at least `value`. */
function niceCeiling(value: number): number {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/**
 * Adds to the path a smooth curve through every point that never overshoots them (Steffen's
 * monotone cubic): a peak is drawn at its height, and no count dips below 0.
 */
function monotoneCurve(g: CanvasRenderingContext2D, xs: number[], ys: number[]): void {
  const n = xs.length;
  const slopes: number[] = [];
  for (let i = 0; i < n - 1; i++) slopes.push((ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]));
  const tangents: number[] = [slopes[0] ?? 0];
  for (let i = 1; i < n - 1; i++) {
    const before = slopes[i - 1];
    const after = slopes[i];
    tangents.push(
      (Math.sign(before) + Math.sign(after)) *
        Math.min(Math.abs(before), Math.abs(after), Math.abs(before + after) / 4),
    );
  }
  tangents.push(slopes[n - 2] ?? 0);
  g.moveTo(xs[0], ys[0]);
  for (let i = 0; i < n - 1; i++) {
    const third = (xs[i + 1] - xs[i]) / 3;
    g.bezierCurveTo(
      xs[i] + third,
      ys[i] + tangents[i] * third,
      xs[i + 1] - third,
      ys[i + 1] - tangents[i + 1] * third,
      xs[i + 1],
      ys[i + 1],
    );
  }
}

/** Draws series of {@linkcode Rate}s on a canvas, the last minute, newest on the right. */
export class RateChart {
  readonly #canvas: HTMLCanvasElement;
  readonly #context: CanvasRenderingContext2D;
  readonly #series: Series[];

  constructor(canvas: HTMLCanvasElement, series: Series[]) {
    this.#canvas = canvas;
    this.#context = canvas.getContext("2d")!;
    this.#series = series;
  }

  /**
   * Draws the chart as of `now` (milliseconds since the epoch).
   *
   * @returns How many of the seconds shown have a count above 0, in any series.
   */
  draw(now: number): number {
    const canvas = this.#canvas;
    const ratio = globalThis.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (
      canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)
    ) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = this.#context;
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);

    const plotWidth = width - PAD.left - PAD.right;
    const plotHeight = height - PAD.top - PAD.bottom;
    const nowSeconds = now / 1000;
    const last = Math.floor(nowSeconds) - 1; // the last complete second
    const first = last - WINDOW_SECONDS;
    let max = 0;
    let points = 0;
    for (let second = first; second <= last; second++) {
      let any = false;
      for (const { rate } of this.#series) {
        const count = rate.at(second);
        if (count > max) max = count;
        if (count > 0) any = true;
      }
      if (any) points++;
    }
    // Four grid steps of a round size, with room above the highest count.
    const step = niceCeiling(Math.max(4, max * 1.15) / 4);
    const top = 4 * step;
    const x = (second: number) =>
      PAD.left + plotWidth - ((nowSeconds - (second + 0.5)) / WINDOW_SECONDS) * plotWidth;
    const y = (count: number) => PAD.top + plotHeight - (count / top) * plotHeight;

    // The grid and its labels.
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "middle";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const value = step * i;
      const lineY = Math.round(y(value)) + 0.5;
      g.strokeStyle = i === 0 ? "rgba(141, 152, 189, 0.35)" : "rgba(141, 152, 189, 0.12)";
      g.setLineDash(i === 0 ? [] : [3, 4]);
      g.beginPath();
      g.moveTo(PAD.left, lineY);
      g.lineTo(PAD.left + plotWidth, lineY);
      g.stroke();
      g.fillStyle = "#5b6690";
      g.textAlign = "right";
      g.fillText(Number.isInteger(value) ? `${value}` : value.toFixed(1), PAD.left - 8, lineY);
    }
    g.setLineDash([]);
    g.textAlign = "center";
    g.textBaseline = "alphabetic";
    for (let ago = WINDOW_SECONDS; ago >= 0; ago -= 15) {
      const labelX = PAD.left + plotWidth - (ago / WINDOW_SECONDS) * plotWidth;
      g.fillText(ago === 0 ? "now" : `−${ago} s`, Math.min(labelX, width - 16), height - 5);
    }

    // The lines, clipped to the plot.
    g.save();
    g.beginPath();
    g.rect(PAD.left, PAD.top - 4, plotWidth, plotHeight + 4);
    g.clip();
    for (const { rate, color, fill } of this.#series) {
      // A series with nothing in the window would only draw over the axis.
      let empty = true;
      for (let second = first; second <= last && empty; second++) empty = rate.at(second) === 0;
      if (empty) continue;
      const xs: number[] = [];
      const ys: number[] = [];
      for (let second = first; second <= last; second++) {
        xs.push(x(second));
        ys.push(y(rate.at(second)));
      }
      g.beginPath();
      monotoneCurve(g, xs, ys);
      g.lineWidth = 2;
      g.lineJoin = "round";
      g.strokeStyle = color;
      g.stroke();
      if (fill) {
        g.lineTo(x(last), y(0));
        g.lineTo(x(first), y(0));
        g.closePath();
        const gradient = g.createLinearGradient(0, PAD.top, 0, PAD.top + plotHeight);
        gradient.addColorStop(0, `${color}55`);
        gradient.addColorStop(1, `${color}00`);
        g.fillStyle = gradient;
        g.fill();
      }
      // The newest point, marked.
      g.beginPath();
      g.arc(x(last), y(rate.at(last)), 3.5, 0, 2 * Math.PI);
      g.fillStyle = color;
      g.shadowColor = color;
      g.shadowBlur = 10;
      g.fill();
      g.shadowBlur = 0;
    }
    g.restore();
    return points;
  }
}
