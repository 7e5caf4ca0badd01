"""The benchmark: ALMA against Foolbox's and the authors' attacks, with the paper's metrics.

Example::

    from foolbox_alma.bench import run_benchmark, write_outputs
    run = run_benchmark(fmodel, images, labels, attacks=["alma-l2", "ddn"], steps=100)
    write_outputs(run, "bench_results/mine", title="my model")

or ``foolbox-alma bench --preset quick``. Modules: :mod:`.runner` (each attack as a run
of the pipeline's batch loop with the floor timing as hooks, repeats, resuming), :mod:`.report`
(table, JSON, PNG, BENCHMARKS.md), :mod:`.cli`; the attacks and their settings are in
:mod:`foolbox_alma.registry`, the floor of plain forward+backward passes in
:mod:`foolbox_alma.timing`, the metrics in :mod:`foolbox_alma.metrics`, the pass counting in
:mod:`foolbox_alma.counting`.

What is reported, per attack and step budget, on the same images with the same seed:

* ASR: share of images whose returned point the model misclassifies (already misclassified
  images count, at distance 0 when the attack returns them unchanged).
* Median distance over all images, a failure counted as +inf: printed "-" when ASR < 50%.
* Forwards / backwards per image, counted (not assumed): forward pre-hooks and full backward hooks
  on the PyTorch module; on TensorFlow and JAX an identity with a custom gradient in front of the
  model (``tf.custom_gradient`` incrementing ``tf.Variable`` counters, ``jax.custom_vjp`` calling
  back with ``jax.debug.callback``), which counts inside ``tf.function`` / ``jax.jit`` code too.
* Seconds, and the time over plain passes: the attack's time divided by the time of as many plain
  forward+backward passes (gradient of a cross-entropy loss with respect to the inputs, same
  batch, same Foolbox model, compiled on TensorFlow / JAX) as it made backward passes. The plain
  passes are timed around each batch, half right before the attack and half right after, so that
  a change in machine load affects both sides alike.
* Optimality (AttackBench, Cinà et al., 2024). For one distance, let ``d_a`` be attack a's
  per-image distances (+inf for failures), ``best = min_a d_a`` per image over all attacks of the
  run measuring that distance, ``eps_max`` the largest finite value of ``best``,
  ``RA_d(eps) = mean_i [d_i > eps]`` the robust accuracy and
  ``A(d) = integral_0^eps_max RA_d(eps) deps = mean_i min(d_i, eps_max)`` its area. With
  ``A_worst = clean_accuracy * eps_max`` (an attack that finds nothing)::

      optimality(a) = (A_worst - A(d_a)) / (A_worst - A(best))

  1.0 when the attack's curve is the best curve, lower when worse, 0 when it finds nothing below
  ``eps_max`` (negative only for an attack that perturbs inputs the model already
  misclassifies and fails elsewhere). NaN when the best curve encloses no area. AttackBench's
  code integrates with the trapezoidal rule over the curve's points; here the step function is
  integrated exactly.
"""

from .report import collect, format_table, load_run, plot_robust_accuracy, write_outputs
from .runner import AttackResult, BenchmarkRun, run_benchmark

__all__ = [
    "AttackResult",
    "BenchmarkRun",
    "collect",
    "format_table",
    "load_run",
    "plot_robust_accuracy",
    "run_benchmark",
    "write_outputs",
]
