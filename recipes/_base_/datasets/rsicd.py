# RSICD in the HarMA JSON layout. The test split is not distributed with the shared data:
# models are selected and reported on the validation split.
data = dict(
    reader=dict(type="harma_json"),
    root="{{$HARMA_ZOO_DATA:../shared/data}}/rsicd",
    image_root="images",
    train="rsicd_train.json",
    val="rsicd_val.json",
    test=None,
    max_words=30,
    skip_unreadable=False,
)
