# The dataset, prepared once as uint8 arrays (ddpm.data.prepare_dataset).
# Uses DATA and DATASET from rules/common.smk; conda: and script: paths are relative to this file.


rule download:
    output:
        images=f"{DATA}/images.npy",
        info=f"{DATA}/info.json",
    log:
        "results/logs/download.log",
    benchmark:
        "results/benchmarks/download.tsv"
    conda:
        "../environment.yml"
    params:
        # params in a fixed key order: reordering the YAML must not rerun anything
        dataset=dict(sorted(config["dataset"].items())),
        # a folder's file listing: adding, removing or changing an image prepares the data again
        files=DATASET.files_digest(),
    script:
        "../scripts/download.py"
