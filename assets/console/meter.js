// The level of a remote WebRTC stream, measured with WebAudio every 50 ms
// (headless Chrome reports no audio levels in getStats). The stream must also
// play in a media element for Chrome to feed it into WebAudio.

/** Calls `onLevel(rms)` every 50 ms with the RMS (0–1) of `stream`. */
export function meter(stream, onLevel) {
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  ctx.resume();
  const buf = new Float32Array(analyser.fftSize);
  return setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    onLevel(Math.sqrt(sum / buf.length));
  }, 50);
}

/** RMS above this counts as sound (-46 dBFS; silence and comfort noise stay below). */
export const SOUND = 0.005;
