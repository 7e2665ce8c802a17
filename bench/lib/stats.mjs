// Order statistics over plain arrays of numbers; empty input gives null so tables can show "n/a".

export function percentile (values, p) {
  if (values.length === 0) return null
  const sorted = Float64Array.from(values).sort()
  // Nearest rank: p99 of 50 samples is the largest one, never an interpolation below it.
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

export function median (values) {
  const present = values.filter((value) => value !== null && value !== undefined && !Number.isNaN(value))
  if (present.length === 0) return null
  const sorted = Float64Array.from(present).sort()
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

export function max (values) {
  return values.length === 0 ? null : values.reduce((a, b) => (b > a ? b : a), -Infinity)
}

export function ratio (a, b) {
  if (a === null || b === null || b === 0) return null
  return a / b
}
