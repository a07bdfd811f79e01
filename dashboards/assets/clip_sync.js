// Clip browser: the top view is the master; the wrist views follow its play, pause, seeks and rate, and the
// timeline's playhead and the instruction under the videos follow its time. Dash re-renders the elements, so the
// listeners sit on the document (capture phase: media events do not bubble) and look elements up by id.
(function () {
  "use strict";
  const MASTER = "video-top";
  const FOLLOWERS = ["video-left_wrist", "video-right_wrist"];
  const MAX_DRIFT_S = 0.15; // re-seek a follower only past this, so playback does not stutter

  function follow(top) {
    for (const id of FOLLOWERS) {
      const v = document.getElementById(id);
      if (!v || !v.currentSrc) continue;
      if (Math.abs(v.currentTime - top.currentTime) > MAX_DRIFT_S) v.currentTime = top.currentTime;
      v.playbackRate = top.playbackRate;
      if (top.paused && !v.paused) v.pause();
      if (!top.paused && v.paused) v.play().catch(() => {}); // a follower still loading plays once it can
    }
  }

  function showTime(top) {
    const track = document.querySelector("#timeline .track");
    if (!track) return;
    const t = top.currentTime;
    const playhead = track.querySelector(".playhead");
    playhead.style.left = `${Math.min(100, (100 * t) / parseFloat(track.dataset.duration))}%`;
    let text = null;
    for (const span of track.querySelectorAll(".span")) {
      const on = t >= parseFloat(span.dataset.start) && t < parseFloat(span.dataset.end);
      span.classList.toggle("current", on);
      if (on) text = span.dataset.text || "(no instruction)";
    }
    document.getElementById("instruction").textContent = text ?? "(between clips)";
  }

  for (const type of ["play", "pause", "seeking", "seeked", "timeupdate", "ratechange", "loadeddata"]) {
    document.addEventListener(type, (e) => {
      if (e.target.id !== MASTER) return;
      follow(e.target);
      showTime(e.target);
    }, true);
  }

  // A click on a span seeks the master to its start.
  document.addEventListener("click", (e) => {
    const span = e.target.closest && e.target.closest("#timeline .span");
    const top = document.getElementById(MASTER);
    if (span && top) top.currentTime = parseFloat(span.dataset.start);
  });
})();
