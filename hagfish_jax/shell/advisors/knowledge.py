"""The remedies shipped with the package: a small knowledge base of training advice.

:func:`~hagfish_jax.shell.advisors.research.offline_search` ranks these entries.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ENTRIES", "SOURCE_PREFIX", "Entry"]

#: What every knowledge-base hit's ``source`` starts with (the entry's slug follows).
SOURCE_PREFIX = "hagfish knowledge base: "


class Entry(NamedTuple):
    """One knowledge-base remedy: a slug (for the source), a title, advice and topics."""

    slug: str
    title: str
    text: str
    topics: tuple[str, ...]


#: The remedies shipped with the package, searched by :func:`offline_search`.
ENTRIES: tuple[Entry, ...] = (
    Entry(
        "exploding-loss",
        "Exploding or diverging loss: learning rate too high",
        "When the training loss climbs, jumps by orders of magnitude or turns NaN within the"
        " first epochs, the step size is almost always too high. Cut the learning rate by"
        " 3-10x and restart from the last good checkpoint rather than continuing from the"
        " blown-up weights. Add gradient clipping at global norm 1.0 and a short linear"
        " warmup (1-5% of the steps) so the first updates stay small.",
        ("divergence", "diverging", "exploding loss", "nan", "instability", "too high"),
    ),
    Entry(
        "nan-values",
        "NaN or infinite values during training",
        "Non-finite losses that appear suddenly after a stable start often come from a"
        " numerical edge rather than the learning rate: a log of zero, a division by a"
        " tiny variance or an overflow in half precision. Compute cross-entropy from logits"
        " instead of probabilities, raise the optimizer epsilon (for example Adam's from"
        " 1e-8 to 1e-6) and keep the loss and normalisation statistics in float32."
        " If that is not enough, also lower the learning rate by 2-3x.",
        ("nan", "inf", "non-finite", "numerical stability", "mixed precision", "overflow"),
    ),
    Entry(
        "gradient-clipping",
        "Gradient clipping against loss spikes",
        "Occasional spikes in the loss curve, with the loss recovering afterwards, point to"
        " rare very large gradients. Clip the global gradient norm at 1.0 (0.5-5 is the"
        " usual range; log the norms first and clip a little above their median). Clipping"
        " keeps the learning rate usable, but if it triggers on most steps the learning"
        " rate itself is too high.",
        ("spikes", "gradient norm", "clipping", "exploding gradients", "stability"),
    ),
    Entry(
        "plateau",
        "Validation loss plateau",
        "When the validation loss stops improving for several epochs while training"
        " continues, the learning rate is usually too large to settle into a minimum."
        " Lower it by 3-10x on the plateau (reduce-on-plateau with a patience of 3-5"
        " epochs), or switch to a cosine decay to a small final value. If the plateau"
        " comes early with a high loss, the model may instead be too small or the"
        " learning rate too low.",
        ("plateau", "stagnation", "stalled", "no improvement", "validation loss flat"),
    ),
    Entry(
        "reduce-on-plateau",
        "Reduce the learning rate when progress stalls",
        "A reduce-on-plateau rule watches a validation metric and multiplies the learning"
        " rate by a factor (0.1-0.5) after a number of epochs without improvement"
        " (patience 2-10). Use a small minimum improvement threshold so noise does not"
        " reset the patience counter, and a floor on the rate (for example 1e-6)."
        " Two or three reductions are usually all that help.",
        ("plateau", "patience", "learning rate decay", "stalled", "adaptive schedule"),
    ),
    Entry(
        "overfitting",
        "Overfitting: growing gap between train and validation",
        "If the training loss keeps falling while the validation loss rises, or the train"
        " accuracy is far above the validation accuracy, the model memorises the training"
        " set. Increase regularisation: weight decay up by 3-10x, dropout 0.1-0.5, label"
        " smoothing 0.1, and stronger data augmentation. Stop early at the best validation"
        " epoch, and consider a smaller model or more data if the gap remains.",
        ("overfitting", "overfit", "generalization gap", "train validation gap", "memorize"),
    ),
    Entry(
        "underfitting",
        "Underfitting: training loss stays high",
        "A model whose training loss stays high, with the validation loss close to it,"
        " lacks capacity or is held back. Reduce regularisation first (halve weight decay,"
        " lower dropout), then increase capacity (wider or deeper layers) and train for"
        " more epochs. Check that the learning rate is not far too low: a learning rate"
        " range test often shows it can be raised 3-10x.",
        ("underfitting", "underfit", "high bias", "capacity", "high training loss"),
    ),
    Entry(
        "oscillation",
        "Oscillating or noisy validation loss",
        "A validation curve that zigzags from epoch to epoch usually means updates that"
        " are too large or too noisy. Lower the learning rate by 2-3x, increase the batch"
        " size, or raise momentum smoothing (Adam beta1 0.9, SGD momentum 0.9). Averaging"
        " the weights (an exponential moving average with decay 0.999) also steadies the"
        " evaluated model; and check that the validation set is big enough, as a few"
        " hundred examples are noisy by themselves.",
        ("oscillation", "oscillating", "noisy", "unstable validation", "zigzag", "variance"),
    ),
    Entry(
        "slow-convergence",
        "Slow convergence: loss still decreasing at the end",
        "If the loss is still decreasing steadily when the budget runs out, training"
        " converges too slowly. Raise the learning rate by 2-3x (as long as it stays"
        " stable), add a warmup so the higher rate is safe, or switch from plain SGD to"
        " Adam, which usually converges faster. Otherwise give the run more epochs: the"
        " curve says the model has not finished learning.",
        ("slow convergence", "still decreasing", "more epochs", "learning rate too low"),
    ),
    Entry(
        "large-batch",
        "Large batches: scaling the learning rate and generalization",
        "Larger batches give less noisy gradients but fewer updates per epoch and often a"
        " worse generalization gap. Follow the linear scaling rule (multiply the learning"
        " rate by the batch size factor, for example 8x batch -> 8x rate), with a warmup of"
        " about 5 epochs, and use LARS or LAMB beyond a few thousand examples per batch."
        " If generalization still suffers, go back to a smaller batch size.",
        ("large batch", "batch size", "linear scaling", "generalization", "sharp minima"),
    ),
    Entry(
        "small-batch-noise",
        "Small batches: noisy gradients",
        "Very small batches (under about 16) make gradient estimates noisy and the loss"
        " curve ragged, and batch normalisation statistics unreliable. Lower the learning"
        " rate roughly in proportion to the batch size, accumulate gradients over several"
        " steps to emulate a larger batch, or replace batch normalisation with group or"
        " layer normalisation. Some noise is useful: it acts as a regulariser.",
        ("small batch", "noisy gradients", "gradient accumulation", "batch size", "noise"),
    ),
    Entry(
        "adam-vs-sgd",
        "Choosing between Adam and SGD with momentum",
        "Adam (learning rate around 1e-3, or 3e-4 for transformers) converges quickly with"
        " little tuning, which makes it the safe default and the first thing to try when"
        " SGD is slow. SGD with momentum 0.9 (learning rate 0.01-0.1 with a decay schedule)"
        " often generalises slightly better on image classification once tuned. Use AdamW"
        " rather than Adam with L2 when weight decay matters.",
        ("optimizer", "adam", "sgd", "momentum", "adamw", "optimizer choice"),
    ),
    Entry(
        "adam-hyperparameters",
        "Tuning Adam's betas and epsilon",
        "Adam's defaults (beta1 0.9, beta2 0.999, epsilon 1e-8) suit most problems. For"
        " unstable training, lowering beta2 to 0.98 or 0.95 makes the second-moment"
        " estimate react faster to sudden large gradients. A larger epsilon (1e-6 to 1e-4)"
        " damps updates for parameters with tiny gradient variance and helps in low"
        " precision.",
        ("adam", "beta1", "beta2", "epsilon", "optimizer", "instability"),
    ),
    Entry(
        "momentum",
        "Momentum settings",
        "Momentum 0.9 is a good default for SGD; 0.95-0.99 smooths noisy gradients further"
        " but needs a smaller learning rate, since the effective step grows like"
        " 1 / (1 - momentum). If the loss oscillates with high momentum, reduce momentum"
        " or the learning rate. Nesterov momentum is a cheap, usually harmless improvement.",
        ("momentum", "nesterov", "sgd", "oscillation", "effective step size"),
    ),
    Entry(
        "weight-decay",
        "Weight decay strength",
        "Weight decay pulls weights toward zero and is the main regulariser for most"
        " networks. Typical values are 1e-4 to 5e-4 for SGD and 0.01-0.1 for AdamW (which"
        " decouples decay from the gradient). Increase it by 3-10x when the model overfits,"
        " decrease it when the model underfits, and usually exclude biases and"
        " normalisation parameters.",
        ("weight decay", "l2", "regularization", "regularisation", "adamw", "overfitting"),
    ),
    Entry(
        "label-smoothing",
        "Label smoothing against overconfidence",
        "Label smoothing replaces the one-hot targets with a mix of the label and the"
        " uniform distribution, which discourages overconfident logits. A value of"
        " 0.05-0.1 usually improves validation accuracy and calibration for classification"
        " with many classes. Avoid it when calibrated probabilities matter downstream or"
        " for knowledge distillation teachers.",
        ("label smoothing", "overconfidence", "calibration", "classification", "regularization"),
    ),
    Entry(
        "dropout",
        "Dropout rates",
        "Dropout randomly zeroes activations during training and helps mostly in large"
        " fully connected layers. Use 0.1-0.3 in convolutional or transformer blocks and up"
        " to 0.5 before dense classifier heads. Raise it when the model overfits, lower or"
        " remove it when the model underfits; training with heavy dropout needs more"
        " epochs.",
        ("dropout", "regularization", "overfitting", "underfitting"),
    ),
    Entry(
        "lr-warmup",
        "Learning-rate warmup",
        "Starting at the full learning rate can blow up training while the weights and the"
        " optimizer statistics are still poorly scaled. Increase the rate linearly from"
        " near zero over the first 1-5% of the steps (or 1-5 epochs). Warmup is"
        " essential with Adam on transformers, with large batches and with high learning"
        " rates, and costs almost nothing otherwise.",
        ("warmup", "warm up", "learning rate schedule", "early instability", "large batch"),
    ),
    Entry(
        "lr-schedules",
        "Learning-rate schedules: cosine, step, one-cycle",
        "A decaying learning rate lets training explore early and settle late. Cosine"
        " decay to about 1% of the peak is a robust default; step decay (divide by 10 at"
        " 50% and 75% of training) works well for SGD; one-cycle (ramp up, then down) often"
        " trains faster. Set the schedule's length to the real number of steps, otherwise"
        " the rate never gets small.",
        ("schedule", "cosine decay", "step decay", "one cycle", "annealing", "learning rate"),
    ),
    Entry(
        "lr-range-test",
        "Finding a learning rate with a range test",
        "Train for a few hundred steps while raising the learning rate exponentially from"
        " about 1e-7 to 1, and record the loss. Pick a rate roughly 10x below the point"
        " where the loss is lowest, or where it falls fastest. This takes minutes and"
        " usually lands within a factor of 3 of the best fixed rate.",
        ("learning rate finder", "range test", "learning rate too low", "learning rate too high"),
    ),
    Entry(
        "early-stopping",
        "Early stopping",
        "Evaluate on the validation set every epoch, keep the weights of the best epoch,"
        " and stop after 5-10 epochs (or 10-20% of the budget) without improvement. Early"
        " stopping bounds overfitting at no cost, but restore the best checkpoint rather"
        " than keeping the last one, and monitor a metric that is not too noisy.",
        ("early stopping", "patience", "overfitting", "best checkpoint", "budget"),
    ),
    Entry(
        "batch-normalisation",
        "Batch normalisation",
        "Normalising activations per batch lets deeper networks train with higher learning"
        " rates and less sensitivity to initialisation. Place it after convolutions or"
        " dense layers, before the nonlinearity. With batches under about 16 its statistics"
        " get noisy; use group or layer normalisation instead, and evaluate with the"
        " running averages, not the batch statistics.",
        ("batch normalization", "batch norm", "normalisation", "layer norm", "deep network"),
    ),
    Entry(
        "data-augmentation",
        "Data augmentation",
        "Augmentation multiplies the effective size of the training set and is one of the"
        " strongest remedies for overfitting. For images, random crops with 4 pixels of"
        " padding and horizontal flips are a cheap baseline; mixup (alpha 0.2) or cutout"
        " add more. Strong augmentation slows training, so pair it with more epochs, and"
        " reduce it if the model underfits.",
        ("augmentation", "mixup", "cutout", "random crop", "flip", "overfitting", "more data"),
    ),
    Entry(
        "initialisation",
        "Weight initialisation",
        "Badly scaled initial weights make activations vanish or explode through depth,"
        " which shows as a loss stuck at chance level or diverging right away. Use He"
        " (Kaiming) initialisation for ReLU networks and Glorot (Xavier) for tanh or"
        " linear layers; initialise the last layer of each residual branch to zero or a"
        " small scale in deep networks.",
        ("initialization", "initialisation", "vanishing gradients", "chance level", "he"),
    ),
    Entry(
        "model-capacity",
        "Model width and depth",
        "Capacity decides whether the model can fit the data at all. If the training loss"
        " stalls high, double the width or add layers (with residual connections and"
        " normalisation beyond about 10 layers). If the model overfits a small data set,"
        " shrink it by 2-4x before piling on regularisation.",
        ("capacity", "width", "depth", "model size", "underfitting", "overfitting"),
    ),
    Entry(
        "class-imbalance",
        "Class imbalance",
        "With a few dominant classes, accuracy looks good while the minority classes are"
        " ignored; track macro F1 or balanced accuracy instead. Weight the loss by inverse"
        " class frequency (or its square root), oversample the rare classes, or use a focal"
        " loss with gamma around 2.",
        ("imbalance", "f1", "minority class", "class weights", "oversampling"),
    ),
    Entry(
        "validation-noise",
        "Judging small differences between runs",
        "Differences in validation accuracy smaller than the noise between seeds are not"
        " evidence. Estimate that noise by repeating the best configuration with 2-3 seeds,"
        " smooth the curves over a few epochs before comparing, and prefer a larger"
        " validation set (thousands of examples) when decisions hinge on tenths of a"
        " percent.",
        ("noise", "seeds", "variance", "evaluation", "validation set size"),
    ),
)
