// Java's standard HTTP client (java.net.http.HttpClient), as a program
// would use it: N requests, each from a new client (so each opens a new
// connection). Its selector thread waits for input on the new socket
// while a worker thread writes the request, a moment later.
// Usage: java JavaHttpClient.java URL N   (prints each reply's first line)
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class JavaHttpClient {
    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[1]);
        for (int i = 0; i < n; i++) {
            HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
            HttpRequest request = HttpRequest.newBuilder(URI.create(args[0] + "/" + i)).build();
            HttpResponse<String> reply = client.send(request, HttpResponse.BodyHandlers.ofString());
            System.out.println(reply.statusCode() + " " + reply.body().trim());
        }
    }
}
