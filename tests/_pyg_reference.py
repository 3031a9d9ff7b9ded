"""The plain PyG layer the tests compare neuralgraphs' products with: ``out[t] = sum_e w_e x[s]``."""

from neuralgraphs._compat import import_pyg

pyg = import_pyg()


class WeightedSum(pyg.nn.MessagePassing):
    def __init__(self):
        super().__init__(aggr="add")

    def forward(self, x, edge_index, edge_weight):
        return self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def message(self, x_j, edge_weight):
        return edge_weight.view(-1, 1) * x_j
