"""Running one function on many inputs at the same moment, from as many threads."""
import threading


def concurrently(fn, inputs):
    results, start = {}, threading.Barrier(len(inputs))

    def work(i, x):
        start.wait()
        try:
            results[i] = fn(x)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i, x)) for i, x in enumerate(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return [results[i] for i in range(len(inputs))]
