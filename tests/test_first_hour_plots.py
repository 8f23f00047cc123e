"""Issue #26 item 10 (plots): the compare bar chart's legend sits beside the bars, never on them, and its
task labels are the full task names report.md's table uses (no shared prefix dropped)."""

import matplotlib.transforms as mtransforms

from mtl_jax.compare import plots


def _group(strategy, tasks, shift):
  return {"strategy": strategy, "mixture": "my_mix", "axes": {}, "seeds": [0, 1],
          "tasks": {t: {"mean": 0.9 - 0.05 * i + shift, "std": 0.01} for i, t in enumerate(tasks)},
          "average": {"mean": 0.85 + shift, "std": 0.01}}


def test_bar_chart_legend_beside_bars_and_full_task_names(tmp_path, monkeypatch):
  tasks = ["file_pairs", "file_ratings", "file_reviews"]
  groups = [_group(s, tasks, k * 0.02) for k, s in enumerate(["hard", "soft", "single"])]
  saved = {}
  real_save = plots._save

  def keep(fig, path):
    saved["fig"] = fig
    return real_save(fig, path)

  monkeypatch.setattr(plots, "_save", keep)
  assert plots.bar_chart(groups, "my_mix", {}, ["hard", "soft", "single"], str(tmp_path)).endswith(".png")
  fig = saved["fig"]
  ax = fig.axes[0]
  renderer = fig.canvas.get_renderer()
  assert [t.get_text() for t in ax.get_xticklabels()] == [*tasks, "average"]
  legend = ax.get_legend().get_window_extent(renderer)
  bars = [p.get_window_extent(renderer) for p in ax.patches]
  assert len(bars) == 3 * 4
  assert not any(legend.overlaps(b) for b in bars)
  # and the legend is inside the saved figure, not cut off
  figure_box = mtransforms.Bbox.from_bounds(0, 0, *fig.canvas.get_width_height())
  assert figure_box.contains(legend.x1 - 1, legend.y1 - 1) and figure_box.contains(legend.x0, legend.y0)
