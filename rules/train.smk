# Training one DDPM per run, then sampling its checkpoints at the sample epochs and its last epoch, and each sample's
# PNG grid.
# Uses DATA, DATASET, RUNS, GPUS, SAMPLE_EPOCHS, UNLISTED_LAST_EPOCHS, CONDITIONAL_RUNS, init_from_of,
# last_checkpoint_of, sampling_of, guide_of, same_samples_of, checkpoint_to_sample and one_of from rules/common.smk;
# conda:, script: and caption paths are relative to this file.

from ddpm.files import publish


rule train:
    input:
        unpack(init_from_of),
        images=f"{DATA}/images.npy",
    output:
        losses="results/{run}/losses.csv",
        checkpoints=expand(
            "results/{{run}}/checkpoints/epoch_{epoch}.pt", epoch=SAMPLE_EPOCHS
        ),
        # the model at the run's last epoch (`epochs`), a sample epoch or not
        last="results/{run}/checkpoints/last.pt",
        config="results/{run}/config.yaml",
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    conda:
        "../environment.yml"
    threads: 2
    resources:
        gpu=lambda wildcards: GPUS[RUNS[wildcards.run].experiment],
        mem_mb=8000,
        runtime=720,
    params:
        # what decides the run (TrainConfig.training_identity): a change of anything else retrains nothing
        identity=lambda wildcards: RUNS[wildcards.run].config.training_identity(),
        experiment=lambda wildcards: RUNS[wildcards.run].experiment,
        dataset=DATASET.to_dict(),
        state_dir=lambda wildcards: f"results/resume/{wildcards.run}",
    script:
        "../scripts/train.py"


# the last epoch's checkpoint under its epoch's name too, where that is not a sample epoch: its sample jobs read it
# there, as they would a sample epoch's, so that listing the epoch among sample_epochs later draws nothing again
rule last_checkpoint:
    input:
        last_checkpoint_of,
    output:
        "results/{run}/checkpoints/epoch_{epoch}.pt",
    log:
        "results/logs/last_checkpoint/{run}/epoch_{epoch}.log",
    wildcard_constraints:
        epoch="|".join(str(epoch) for epoch in UNLISTED_LAST_EPOCHS) or "none",
    localrule: True
    run:
        publish(input[0], output[0])


rule sample:
    input:
        unpack(guide_of),
        unpack(same_samples_of),
        checkpoint=checkpoint_to_sample,
    output:
        array="results/{run}/samples/epoch_{epoch}{variant}{draw}.npy",
    log:
        "results/logs/sample/{run}/epoch_{epoch}{variant}{draw}.log",
    benchmark:
        "results/benchmarks/sample/{run}/epoch_{epoch}{variant}{draw}.tsv"
    wildcard_constraints:
        run=one_of(set(RUNS) - set(CONDITIONAL_RUNS)),
    conda:
        "../environment.yml"
    threads: 2
    resources:
        gpu=lambda wildcards: min(GPUS[RUNS[wildcards.run].experiment], 1),
        mem_mb=8000,
        runtime=240,
    params:
        sampling=sampling_of,
        device=lambda wildcards: RUNS[wildcards.run].config.device,
    script:
        "../scripts/sample.py"


# a class-conditional run's samples, drawn class-balanced (sample i has label i mod K), and their labels beside them
use rule sample as sample_with_labels with:
    output:
        array="results/{run}/samples/epoch_{epoch}{variant}{draw}.npy",
        labels="results/{run}/samples/epoch_{epoch}{variant}{draw}_labels.npy",
    wildcard_constraints:
        run=one_of(CONDITIONAL_RUNS),


rule plot_grid:
    input:
        "results/{run}/samples/epoch_{epoch}{variant}.npy",
    output:
        report(
            "results/{run}/samples/epoch_{epoch}{variant}.png",
            caption="../report/samples.rst",
            category="Samples",
            subcategory="{run}",
            labels={
                "run": "{run}",
                "epoch": "{epoch}",
                **({"sampling": "{variant}"} if SAMPLING_SWEEP else {}),
            },
        ),
    log:
        "results/logs/plot_grid/{run}/epoch_{epoch}{variant}.log",
    conda:
        "../environment.yml"
    params:
        grid_size=config["sampling"]["grid_size"],
        # a class-conditional run's grid is K wide: each column holds one class
        columns=lambda wildcards: (
            DATASET.num_classes if wildcards.run in CONDITIONAL_RUNS else None
        ),
    script:
        "../scripts/plot_grid.py"
