"""A model whose worker process dies once, in the middle of a shard (fault injection for the Ray
tests): the zoo's SmallCNN, except that the first process to make its fifth forward pass while
the marker file named by ``FOOLBOX_ALMA_TEST_DIE_MARKER`` does not exist creates that file and
exits at once (``os._exit``: no cleanup, as a killed process). Later processes see the marker and
run normally, so the retried shard computes exactly what the plain SmallCNN computes."""

import os

DIE_AT_CALL = 5


def smallcnn_that_dies_once():  # type: ignore[no-untyped-def]
    import foolbox as fb
    import torch

    from foolbox_alma import zoo

    marker = os.environ["FOOLBOX_ALMA_TEST_DIE_MARKER"]

    class DiesOnce(torch.nn.Module):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == DIE_AT_CALL and not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(str(os.getpid()))
                os._exit(1)
            return self.net(x)

    return fb.PyTorchModel(DiesOnce(zoo.smallcnn_torch()).eval(), bounds=(0, 1))
