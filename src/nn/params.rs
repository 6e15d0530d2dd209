//! The named parameter table: every trainable tensor (and every BatchNorm running
//! statistic) is a named range of one flat f32 buffer.

/// One named tensor inside a flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    /// PyTorch-style name, e.g. `0.weight` or `1.running_mean`.
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Offset in f32 elements from the start of the flat buffer.
    pub offset: usize,
}

impl ParamEntry {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element range in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Named tensors laid out back to back in one flat buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamTable {
    pub entries: Vec<ParamEntry>,
    /// Total length of the flat buffer in f32 elements.
    pub len: usize,
}

impl ParamTable {
    /// The first value of `values` (rows of this table's layout, back to back) that
    /// is NaN or infinite, named by row, tensor and index in the tensor; `None` if
    /// every value is finite.
    pub fn first_non_finite(&self, values: &[f32]) -> Option<String> {
        let i = values.iter().position(|v| !v.is_finite())?;
        let width = self.len.max(1);
        let (row, column) = (i / width, i % width);
        let place = match self.entries.iter().find(|e| e.range().contains(&column)) {
            Some(e) => format!("`{}` element {}", e.name, column - e.offset),
            None => format!("value {column}"),
        };
        let row = if values.len() > width {
            format!("sample {row}, ")
        } else {
            String::new()
        };
        Some(format!(
            "{row}{place} is {} (weights must be finite)",
            values[i]
        ))
    }

    /// Append a tensor and return its offset.
    pub fn push(&mut self, name: String, shape: Vec<usize>) -> usize {
        let offset = self.len;
        self.len += shape.iter().product::<usize>();
        self.entries.push(ParamEntry {
            name,
            shape,
            offset,
        });
        offset
    }

    /// Reserve `len` elements that belong to no named tensor (scratch); returns the offset.
    pub fn reserve(&mut self, len: usize) -> usize {
        let offset = self.len;
        self.len += len;
        offset
    }
}
