/** The median of the rounds (the upper middle one for an even count), as the benches report it. */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
