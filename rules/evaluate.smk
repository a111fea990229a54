# FID of each run's samples against the dataset (ddpm.metrics; Heusel et al. 2017), and beside it, in the same feature
# space, improved precision and recall (Kynkäänniemi et al. 2019), and in pixel space the memorisation rate against the
# training images (the criterion of Yoon et al. 2023).
# config["evaluation"]: extractor ("classifier": a small CNN trained once on the dataset's labels, or "inception":
# the standard FID InceptionV3) and num_reference (how many dataset images the reference statistics use; null: all).
# Uses DATA, GPUS, RUNS, VARIANTS and evaluation_inputs from rules/common.smk; conda: and script: paths are relative to this file.

EVAL_EXTRACTOR = config["evaluation"]["extractor"]
EVAL_CLASSIFIER = "results/reference/classifier.pt"
# one GPU for the evaluation jobs when any experiment trains on GPUs, else the CPU
EVAL_GPUS = min(max(GPUS.values()), 1)
EVAL_DEVICE = "auto" if EVAL_GPUS else "cpu"

# the trained classifier, when the configured extractor is the classifier
EXTRACTOR_INPUTS = (
    {"classifier": EVAL_CLASSIFIER} if EVAL_EXTRACTOR == "classifier" else {}
)


rule train_classifier:
    input:
        images=f"{DATA}/images.npy",
    output:
        EVAL_CLASSIFIER,
    log:
        "results/logs/reference/train_classifier.log",
    benchmark:
        "results/benchmarks/reference/train_classifier.tsv"
    conda:
        "../environment.yml"
    threads: 2
    resources:
        gpu=EVAL_GPUS,
        mem_mb=8000,
        runtime=120,
    params:
        device=EVAL_DEVICE,
    script:
        "../scripts/train_classifier.py"


rule reference_stats:
    input:
        unpack(lambda wildcards: EXTRACTOR_INPUTS),
        images=f"{DATA}/images.npy",
    output:
        f"results/reference/{EVAL_EXTRACTOR}_stats.pt",
    log:
        f"results/logs/reference/{EVAL_EXTRACTOR}_stats.log",
    benchmark:
        f"results/benchmarks/reference/{EVAL_EXTRACTOR}_stats.tsv"
    conda:
        "../environment.yml"
    threads: 2
    resources:
        gpu=EVAL_GPUS,
        mem_mb=8000,
        runtime=240,
    params:
        extractor=EVAL_EXTRACTOR,
        num_reference=config["evaluation"]["num_reference"],
        device=EVAL_DEVICE,
    script:
        "../scripts/reference_stats.py"


rule evaluate:
    input:
        unpack(evaluation_inputs),
        samples=expand(
            "results/{{run}}/samples/epoch_{{epoch}}{{variant}}{draw}.npy",
            draw=draw_suffixes(config["sampling"]),
        ),
        reference=rules.reference_stats.output[0],
        images=f"{DATA}/images.npy",  # the training images, for the memorisation rate
    output:
        "results/{run}/metrics/epoch_{epoch}{variant}.json",
    log:
        "results/logs/evaluate/{run}/epoch_{epoch}{variant}.log",
    benchmark:
        "results/benchmarks/evaluate/{run}/epoch_{epoch}{variant}.tsv"
    conda:
        "../environment.yml"
    threads: 2
    resources:
        gpu=EVAL_GPUS,
        mem_mb=8000,
        runtime=120,
    params:
        experiment=lambda wildcards: RUNS[wildcards.run].experiment,
        # the swept sampling fields' values, as columns of the metric row
        variant=lambda wildcards: VARIANTS[wildcards.variant].columns(),
        extractor=EVAL_EXTRACTOR,
        device=EVAL_DEVICE,
    script:
        "../scripts/evaluate.py"
