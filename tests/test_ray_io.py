"""rayalign.data.ray_io on a real local Ray."""

import pyarrow as pa


def test_grouped_hands_each_group_over_whole_and_in_key_order(ray_local):
    from ray.data.context import DataContext, ShuffleStrategy

    from rayalign.data.ray_io import grouped, to_table

    # Three blocks, each prompt's rows spread over all of them, keys out of order.
    blocks = [pa.table({"prompt_id": ["c", "a", "b", "a"], "x": [i, i, i, i]}) for i in range(3)]
    ds = ray_local.data.from_arrow(blocks)

    def count(group: pa.Table) -> pa.Table:
        return pa.table({"prompt_id": [group["prompt_id"][0].as_py()], "rows": [group.num_rows]})

    out = to_table(grouped(ds, "prompt_id").map_groups(count, batch_format="pyarrow"))
    # Hash partitions would hand the groups over in partition order; the sort in key order.
    assert out.to_pylist() == [{"prompt_id": "a", "rows": 6}, {"prompt_id": "b", "rows": 3},
                               {"prompt_id": "c", "rows": 3}]
    # Set on ds's own context only: other datasets keep Ray's default.
    assert DataContext.get_current().shuffle_strategy != ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
