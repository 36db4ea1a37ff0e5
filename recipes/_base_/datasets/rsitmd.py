# RSITMD in the HarMA JSON layout; image paths in the files look like train/bridge_942.tif.
data = dict(
    reader=dict(type="harma_json"),
    root="{{$HARMA_ZOO_DATA:../shared/data}}/rsitmd",
    image_root="images",
    train="rsitmd_train.json",
    val="rsitmd_val.json",
    test="rsitmd_test.json",
    max_words=30,
    skip_unreadable=False,
)
