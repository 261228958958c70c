// One allocation test at a time: the write-loop budget reads the process-wide counter, which a test running
// beside it would inflate.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
